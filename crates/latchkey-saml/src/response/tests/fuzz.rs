//! Property tests: random mutations of valid signed responses never panic and never yield a
//! subject other than the original one (Ok only when the mutation was harmless).

use proptest::prelude::*;

use super::*;

/// Valid responses in the shapes that matter: Response signed, assertion signed, both, and a
/// signed-then-encrypted assertion.
fn bases() -> &'static [String] {
    static BASES: OnceLock<Vec<String>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut out = Vec::new();
        for (sign_response, sign_assertion, encrypt) in
            [(true, false, false), (false, true, false), (true, true, false), (false, true, true)]
        {
            let mut spec = spec();
            spec.sign_response = sign_response;
            spec.sign_assertion = sign_assertion;
            if encrypt {
                spec.encrypt_to = Some(sp_keys().cert_pem.clone());
                spec.encryption = Encryption::Aes128Cbc;
            }
            out.push(idp().response_xml(&spec));
        }
        out
    })
}

fn spans(xml: &str) -> Vec<(usize, usize)> {
    dom::parse(xml).unwrap().descendants().into_iter().map(|e| (e.start, e.end)).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateElement(usize),
    DeleteElement(usize),
    /// A copy of one element inserted at the start of another's content (wrapping shapes).
    CopyInto(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop::sample::select(b"<>/\"'=&;!-?[] azAZ09#:\n\x00\xff".to_vec());
    prop_oneof![
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (
            any::<usize>(),
            prop::sample::select(vec!["<!---->", "&amp;", "<x/>", "\"", "<![CDATA[x]]>", "</a>"])
        )
            .prop_map(|(at, s)| Mutation::Insert(at, s.to_owned())),
        any::<usize>().prop_map(Mutation::DuplicateElement),
        any::<usize>().prop_map(Mutation::DeleteElement),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::CopyInto(a, b)),
    ]
}

fn apply(xml: &str, mutation: &Mutation) -> Vec<u8> {
    let bytes = xml.as_bytes();
    let elements = spans(xml);
    let pick = |k: usize| elements[k % elements.len()];
    let splice = |at: usize, remove: usize, insert: &[u8]| {
        [&bytes[..at], insert, &bytes[(at + remove).min(bytes.len())..]].concat()
    };
    match mutation {
        Mutation::SetByte(at, b) => splice(at % bytes.len(), 1, &[*b]),
        Mutation::Delete(at, len) => splice(at % bytes.len(), *len, &[]),
        Mutation::Insert(at, text) => splice(at % bytes.len(), 0, text.as_bytes()),
        Mutation::DuplicateElement(k) => {
            let (start, end) = pick(*k);
            splice(end, 0, &bytes[start..end])
        }
        Mutation::DeleteElement(k) => {
            let (start, end) = pick(*k);
            splice(start, end - start, &[])
        }
        Mutation::CopyInto(k, j) => {
            let (start, end) = pick(*k);
            let (target, target_end) = pick(*j);
            // After the target's start tag: the first '>' of the element.
            let at =
                bytes[target..target_end].iter().position(|b| *b == b'>').unwrap() + target + 1;
            splice(at, 0, &bytes[start..end])
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutations_never_panic_nor_change_the_subject(base in 0usize..4, mutation in mutation()) {
        let xml = &bases()[base];
        let mutated = apply(xml, &mutation);
        let env = env();
        if let Ok(verified) = verify_response(&STANDARD.encode(&mutated), &env.expect()) {
            prop_assert_eq!(verified.name_id.map(|n| n.value), Some(USER.to_owned()));
            prop_assert_eq!(verified.attributes.get("email"), Some(&vec![USER.to_owned()]));
        }
    }
}

#[test]
fn every_base_is_accepted_unmutated() {
    for xml in bases() {
        assert_eq!(check(xml).unwrap().name_id.unwrap().value, USER);
    }
}
