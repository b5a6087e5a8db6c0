//! Printing: readable tables by default, JSON with DBOS's keys under `--json`.

use std::io::Write;

use serde_json::Value;

/// A table with a header row, printed with aligned columns.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", line(self.header.clone()));
        for row in &self.rows {
            let _ = writeln!(stdout, "{}", line(row.iter().map(String::as_str).collect()));
        }
    }
}

/// Prints a JSON value on one line.
pub(crate) fn json(value: &Value) {
    println!("{value}");
}

/// Key/value lines, keys aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:width$}  {v}");
    }
}

/// An epoch-milliseconds time as RFC 3339 UTC, or `-`.
pub(crate) fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => dbos_core::codec::format_rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        ),
        _ => "-".to_owned(),
    }
}

/// An optional cell.
pub(crate) fn opt(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// A value shortened to fit a table cell.
pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(3)).collect();
    s.push_str("...");
    s
}
