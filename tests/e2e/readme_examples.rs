//! The README's streaming examples run exactly as written there (curl, Python with `requests`,
//! JavaScript with `fetch`), with only the address and the key replaced: the docs cannot drift
//! from what the service does.

use std::process::Command;

use crate::support::*;

/// The code block whose first line is `# example: NAME` or `// example: NAME`.
fn example(name: &str, key: &str) -> String {
    let readme = std::fs::read_to_string("README.md").expect("README.md at the project root");
    let marker = |line: &str| {
        line.strip_prefix("# example: ").or_else(|| line.strip_prefix("// example: ")).map(str::trim) == Some(name)
    };
    let mut lines = readme.lines().skip_while(|l| !marker(l));
    assert!(lines.next().is_some(), "no example {name} in README.md");
    let code: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    code.join("\n").replace("https://your-attive-instance.com", &base_url()).replace("YOUR_API_KEY", key)
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_curl_example_streams_events() {
    let key = Workspace::new().key();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(example("stream-curl", &key));
    let out = run(cmd, "the curl example");
    assert!(out.starts_with("event: start\ndata: {"), "{out}");
    assert!(out.contains("event: delta\ndata: {\"text\":"), "{out}");
    assert!(out.trim_end().lines().rev().nth(1) == Some("event: done"), "{out}");
}

#[test]
fn the_python_example_prints_the_streamed_answer() {
    let key = Workspace::new().key();
    // `requests` comes with the test tools' virtual environment (schemathesis depends on it).
    let mut cmd = Command::new(".tools/venv/bin/python");
    cmd.arg("-c").arg(example("stream-python", &key));
    let out = run(cmd, "the Python example");
    assert!(out.starts_with("Stub reply to: Summarize recent customer feedback"), "{out}");
    assert!(out.contains("\n[done: {") && out.contains("'promptTokens': "), "{out}");
}

#[test]
fn the_javascript_example_prints_the_streamed_answer() {
    let key = Workspace::new().key();
    let mut cmd = Command::new("node");
    cmd.arg("--input-type=module").arg("-e").arg(example("stream-js", &key));
    let out = run(cmd, "the JavaScript example");
    assert!(out.starts_with("Stub reply to: Summarize recent customer feedback"), "{out}");
    assert!(out.contains("\n[done: {") && out.contains("\"promptTokens\":"), "{out}");
}
