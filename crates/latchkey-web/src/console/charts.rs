//! Small bar charts drawn on the server as SVG: no script, no external resource, nothing the
//! page CSP would have to allow. Only numbers and labels we format ourselves go into the markup,
//! and labels are escaped anyway.

use std::fmt::Write as _;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 160;
const AXIS: u32 = 18;
const LEFT: u32 = 36;

/// One bar: its label and its stacked values, bottom first (classes `ok`, then `bad`).
pub struct Bar {
    pub label: String,
    pub values: Vec<u64>,
}

const SERIES_CLASSES: [&str; 2] = ["ok", "bad"];

/// A stacked bar chart; `summary` is its accessible name. Every `label_every`-th bar is labelled.
pub fn bar_chart(summary: &str, bars: &[Bar], label_every: usize) -> String {
    let max = bars.iter().map(|b| b.values.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - AXIS - 8;
    let slot = f64::from(WIDTH - LEFT) / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(summary)
    );
    let base = HEIGHT - AXIS;
    let _ = write!(svg, r#"<line x1="{LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}"/>"#);
    let _ = write!(svg, r#"<text x="0" y="12">{max}</text><text x="0" y="{base}">0</text>"#);
    for (i, bar) in bars.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = f64::from(base);
        let _ = write!(svg, "<g><title>{}: {}</title>", escape(&bar.label), describe(&bar.values));
        for (k, v) in bar.values.iter().enumerate() {
            let h = f64::from(plot_h) * (*v as f64) / (max as f64);
            y -= h;
            let class = SERIES_CLASSES.get(k).copied().unwrap_or("ok");
            if *v > 0 {
                let _ = write!(
                    svg,
                    r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}"/>"#
                );
            }
        }
        svg.push_str("</g>");
        if label_every > 0 && i % label_every == 0 {
            let _ =
                write!(svg, r#"<text x="{x:.1}" y="{}">{}</text>"#, HEIGHT - 4, escape(&bar.label));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn describe(values: &[u64]) -> String {
    values.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, values: &[u64]) -> Bar {
        Bar { label: label.into(), values: values.to_vec() }
    }

    #[test]
    fn the_tallest_bar_fills_the_plot_and_others_scale_to_it() {
        let svg =
            bar_chart("Sign-ins", &[bar("a", &[10, 0]), bar("b", &[5, 5]), bar("c", &[0, 0])], 1);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // 10 is the maximum: a full-height (134 px) bar, and two halves for "b".
        assert!(svg.contains(r#"height="134.0""#), "{svg}");
        assert_eq!(svg.matches(r#"height="67.0""#).count(), 2, "{svg}");
        assert_eq!(svg.matches(r#"class="bad""#).count(), 1);
        assert!(svg.contains("<title>b: 5 / 5</title>"));
    }

    #[test]
    fn labels_are_escaped_and_an_empty_chart_is_still_a_chart() {
        let svg = bar_chart("<x>", &[bar("<script>", &[1])], 1);
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        let empty = bar_chart("none", &[], 1);
        assert!(empty.contains("<svg") && !empty.contains("<rect"));
    }
}
