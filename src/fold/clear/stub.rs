//! The text a cleared output is replaced by: one line saying what it was, its size and exit
//! status and how to get it back, then its outline.

use std::fmt::Write;

use super::candidates::{exit_status, Described};
use super::outline::Shape;
use crate::fold::shapes;

/// Bytes of the command or subject quoted in a stub's first line.
const MAX_QUOTED: usize = 80;

/// A stub's text. `recall` is the command that prints the original (`cat .../<id>.txt`, or a
/// `curl` of the proxy's `/o/<id>`).
pub fn text(d: &Described, subject: Option<&str>, original: &str, outline: &[String], recall: &str) -> String {
    let mut s = String::with_capacity(256 + outline.iter().map(|l| l.len() + 1).sum::<usize>());
    s.push_str("[tokenfold: cleared ");
    s.push_str(&d.tool);
    match (d.shape, &d.path) {
        (Shape::View, Some(p)) => {
            let _ = write!(s, " of {p}");
            if let Some((a, b)) = d.lines_shown {
                let _ = write!(s, " lines {a}-{b}");
            }
        }
        _ => {
            if let Some(c) = d.command.as_deref().or(subject) {
                let _ = write!(s, " output of `{}`", shapes::clip(c, MAX_QUOTED).replace('`', "'"));
            } else {
                s.push_str(" output");
            }
        }
    }
    let lines = original.lines().count();
    let _ = write!(s, " ({lines} lines, {}", size(original.len()));
    if let Some(code) = exit_status(original) {
        let _ = write!(s, ", exit {code}");
    }
    s.push_str("). ");
    if d.shape == Shape::View {
        s.push_str("Re-read it for the current text before an Edit. ");
    }
    let _ = write!(s, "Original: {recall}]");
    for l in outline {
        s.push('\n');
        s.push_str(l);
    }
    s
}

fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(shape: Shape, path: Option<&str>, command: Option<&str>) -> Described {
        Described {
            shape,
            tool: if shape == Shape::View { "Read".into() } else { "Bash".into() },
            command: command.map(str::to_string),
            path: path.map(str::to_string),
            lines_shown: path.map(|_| (1, 240)),
            excluded: false,
        }
    }

    #[test]
    fn first_line_says_what_how_big_and_how_to_recall() {
        let d = described(Shape::View, Some("lib/a.ex"), None);
        let s =
            text(&d, None, &"x\n".repeat(240), &["defines: a, b".into()], "cat ~/.cache/tokenfold/o/0123456789ab.txt");
        assert_eq!(
            s,
            "[tokenfold: cleared Read of lib/a.ex lines 1-240 (240 lines, 480 B). Re-read it for the current text before an Edit. Original: cat ~/.cache/tokenfold/o/0123456789ab.txt]\ndefines: a, b"
        );
        let d = described(Shape::Run, None, Some("mix test"));
        let s = text(&d, None, "Exit code 2\nboom\n", &[], "cat x");
        assert!(
            s.starts_with("[tokenfold: cleared Bash output of `mix test` (2 lines, 17 B, exit 2). Original: cat x]"),
            "{s}"
        );
    }
}
