//! Reporting: number formats, markdown table heads, and the JSON results.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Whole numbers without a decimal, anything else with one.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A number of a JSON report with one decimal, `–` where there is none.
pub fn fixed(v: &Value) -> String {
    v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"))
}

/// [`fixed`] with its sign.
pub fn signed(v: &Value) -> String {
    v.as_f64().map_or("–".to_owned(), |x| format!("{x:+.1}"))
}

/// The head of a markdown table: its columns (names separated by ` | `), then the alignment
/// row, one character of `align` per column: `l` left, `r` right.
pub fn print_head(columns: &str, align: &str) {
    assert_eq!(columns.split(" | ").count(), align.len(), "one alignment per column: {columns}");
    let rule: String = align.chars().map(|a| if a == 'r' { "---:|" } else { "---|" }).collect();
    println!("| {columns} |");
    println!("|{rule}");
}

/// Writes `out` to `path`, pretty, and says where (or why not).
pub fn write_json_file(path: &str, out: &Value) {
    match std::fs::write(path, serde_json::to_string_pretty(out).unwrap_or_default()) {
        Ok(()) => println!("JSON: {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}

/// Writes `out` to `bench/results/<name>-<UTC time>.json` of the repository.
pub fn write_json(name: &str, out: &Value) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results");
    let path = format!("{dir}/{name}-{}.json", timestamp());
    match std::fs::create_dir_all(dir) {
        Ok(()) => write_json_file(&path, out),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}

/// The time now, UTC, as `20260101T120000Z`.
fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or_else(|| secs.to_string(), |t| t.format("%Y%m%dT%H%M%SZ").to_string())
}
