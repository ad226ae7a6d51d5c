//! The core's layering, checked. Domains import only to their left:
//! `infra` → `identity` → `tenancy` → `sign_in` → `enterprise` → `oauth` → `admin` (a module may `use` modules of its own
//! domain or of a domain to its left, never to its right); `lib.rs` and `runtime.rs` wire them
//! all together, after every domain. And no two modules import each other, directly or round a longer circle
//! (a parent module and the children it declares are one unit and may refer to each other).
//! The test reads the source, so a new rightward import or a new circle fails the build's tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const DOMAINS: [&str; 7] =
    ["infra", "identity", "tenancy", "sign_in", "enterprise", "oauth", "admin"];

fn rank(domain: &str) -> Option<usize> {
    DOMAINS.iter().position(|d| *d == domain)
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path below the crate root (`infra/store.rs` → `["infra", "store"]`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> =
        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The source without comments and string literals, so prose never reads as an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut in_str = false;
        for c in line.chars() {
            match c {
                '"' => in_str = !in_str,
                _ if in_str => {}
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// Parses the use tree (or path) at `chars[*pos..]` that follows `crate::` or `super::`, and
/// adds every full path it names to `out`.
fn parse_tree(chars: &[char], pos: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut path = prefix;
    loop {
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
        match chars.get(*pos) {
            Some(&c) if ident(c) => {
                let mut seg = String::new();
                while let Some(&c) = chars.get(*pos).filter(|c| ident(**c)) {
                    seg.push(c);
                    *pos += 1;
                }
                if chars.get(*pos) == Some(&':') && chars.get(*pos + 1) == Some(&':') {
                    *pos += 2;
                    path.push(seg);
                    continue;
                }
                if seg != "self" {
                    path.push(seg);
                }
                out.push(path);
                return;
            }
            Some('{') => {
                *pos += 1;
                loop {
                    parse_tree(chars, pos, path.clone(), out);
                    // Skip an alias (`as x`) up to the separator.
                    while chars.get(*pos).is_some_and(|c| *c != ',' && *c != '}') {
                        *pos += 1;
                    }
                    match chars.get(*pos) {
                        Some(',') => *pos += 1,
                        _ => {
                            *pos += 1;
                            return;
                        }
                    }
                    while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
                        *pos += 1;
                    }
                    if chars.get(*pos) == Some(&'}') {
                        *pos += 1;
                        return;
                    }
                }
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// The module files a source file refers to through `crate::` and `super::` paths.
fn references(root: &Path, file: &Path, text: &str) -> BTreeSet<Vec<String>> {
    let code = code_only(text);
    let here = module_of(root, file);
    let chars: Vec<char> = code.chars().collect();
    let mut paths = Vec::new();
    for (marker, base) in [("crate::", Vec::new()), ("super::", parent_of(&here))] {
        let marker: Vec<char> = marker.chars().collect();
        let mut i = 0;
        while i + marker.len() <= chars.len() {
            let at_marker = chars[i..i + marker.len()] == marker[..];
            let preceded = i > 0
                && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
            if at_marker && !preceded {
                let mut pos = i + marker.len();
                parse_tree(&chars, &mut pos, base.clone(), &mut paths);
                i = pos.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    paths.into_iter().map(|p| resolve(root, &p)).filter(|m| !m.is_empty()).collect()
}

/// The module `super` names: the parent of this file's module.
fn parent_of(here: &[String]) -> Vec<String> {
    let mut p = here.to_vec();
    p.pop();
    p
}

/// The deepest module file a path names.
fn resolve(root: &Path, path: &[String]) -> Vec<String> {
    let mut dir = root.to_path_buf();
    let mut module = Vec::new();
    for seg in path {
        let is_module =
            dir.join(format!("{seg}.rs")).is_file() || dir.join(seg).join("mod.rs").is_file();
        if !is_module {
            break;
        }
        module.push(seg.clone());
        dir = dir.join(seg);
    }
    module
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files
        .iter()
        .map(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            (module_of(&root, f), references(&root, f, &text))
        })
        .collect()
}

/// One module contains the other (a parent and the children it declares).
fn nested(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[test]
fn domains_import_only_to_their_left() {
    let mut wrong = Vec::new();
    for (module, refs) in graph() {
        let Some(from) = module.first().and_then(|d| rank(d)) else { continue };
        for r in refs {
            let to = r.first().map(String::as_str);
            // The wiring at the root (the job runner) comes after every domain.
            let rightward = to.and_then(rank).map_or(to == Some("runtime"), |to| to > from);
            if rightward {
                wrong.push(format!("{} uses {}", module.join("::"), r.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "rightward imports:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other() {
    let g = graph();
    let edges: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = g
        .iter()
        .map(|(m, refs)| (m, refs.iter().filter(|r| !nested(m, r) && g.contains_key(*r)).collect()))
        .collect();
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a Vec<String>,
        edges: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        stack: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            return Some(stack[at..].iter().map(|s| s.join("::")).collect());
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        let mut stack = Vec::new();
        if let Some(circle) = visit(m, &edges, &mut stack, &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = root.join("identity").join("sessions.rs");
    let text = "use crate::{Error, infra::{store::Store, jobs}, tenancy::orgs};\nfn f() { crate::oauth::backchannel::x(); super::users::y(); }";
    let refs = references(&root, &file, text);
    let names: BTreeSet<String> = refs.iter().map(|r| r.join("::")).collect();
    for expected in
        ["infra::store", "infra::jobs", "tenancy::orgs", "oauth::backchannel", "identity::users"]
    {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
}
