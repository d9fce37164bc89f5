//! One way to print a table for a person (`tokenfold report`, `pool` and `replay`): each column
//! as wide as its widest cell, two spaces apart, text left-aligned and numbers right-aligned;
//! lines of text between rows (section titles, notes) print as they are. Hand-written rather
//! than a table crate: the reports interleave such lines with rows and print no borders.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

enum Line {
    Row(Vec<String>),
    Text(String),
}

pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    lines: Vec<Line>,
}

impl Table {
    /// A table with these columns: (header, alignment) each.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            header: columns.iter().map(|(h, _)| h.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            lines: Vec::new(),
        }
    }

    /// A row; missing cells are empty.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.lines.push(Line::Row(cells.into_iter().collect()));
    }

    /// A line printed as it is between the rows.
    pub fn text(&mut self, line: impl Into<String>) {
        self.lines.push(Line::Text(line.into()));
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for line in &self.lines {
            if let Line::Row(cells) = line {
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(width(c));
                }
            }
        }
        let row = |cells: &[String]| {
            let mut line = String::new();
            for (i, (w, align)) in widths.iter().zip(&self.align).enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = " ".repeat(w - width(cell).min(*w));
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            line.truncate(line.trim_end().len());
            line
        };
        let mut out = row(&self.header);
        out.push('\n');
        for line in &self.lines {
            match line {
                Line::Row(cells) => out.push_str(&row(cells)),
                Line::Text(t) => out.push_str(t),
            }
            out.push('\n');
        }
        out
    }
}

/// Which end of a clipped text is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// `a-long-na…`: names and messages.
    Start,
    /// `…ong/path/file.jsonl`: paths, whose end tells them apart.
    End,
}

/// `s` in at most `max` characters, the cut marked with `…`.
pub fn clip(s: &str, max: usize, keep: Keep) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let kept = max.saturating_sub(1);
    match keep {
        Keep::Start => s.chars().take(kept).chain(std::iter::once('…')).collect(),
        Keep::End => std::iter::once('…').chain(s.chars().skip(n - kept)).collect(),
    }
}

/// `part` as a percentage of `whole`; 0 when `whole` is 0.
pub fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_text_lines_stay_as_they_are() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right), ("note", Align::Left)]);
        t.text("section one");
        t.row(["a".to_string(), "1234".to_string(), "x".to_string()]);
        t.row(["longer".to_string(), "5".to_string()]);
        assert_eq!(t.render(), "name       n  note\nsection one\na       1234  x\nlonger     5\n");
    }

    #[test]
    fn clip_keeps_either_end_and_pct_of_nothing_is_zero() {
        assert_eq!(clip("abcdef", 4, Keep::Start), "abc…");
        assert_eq!(clip("abcdef", 4, Keep::End), "…def");
        assert_eq!(clip("abc", 4, Keep::End), "abc");
        assert_eq!(pct(1.0, 4.0), 25.0);
        assert_eq!(pct(1.0, 0.0), 0.0);
    }
}
