//! `Upstreams::load`: every field checked, errors naming the path, the
//! upstream and the field; keys read at load and never shown.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pointsman_upstream::{UpstreamConfig, UpstreamError, UpstreamKind, Upstreams};
use support::{chat_body, request, Stub};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The error's text, checked to be a `Config` error naming `path`.
fn load_error(path: &Path) -> String {
    match Upstreams::load(path) {
        Err(error @ UpstreamError::Config { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(&path.display().to_string()),
                "no path in: {text}"
            );
            text
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

const OK_ENTRY: &str = r#"
[[upstream]]
model = "gpt-4o"
kind = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "gpt-4o-2024-08-06"
"#;

#[test]
fn loads_every_field_with_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = write(&dir, "key", "sk-from-file\n");
    let text = format!(
        r#"{OK_ENTRY}
[[upstream]]
model = "llama-3-8b"
kind = "openai"
base_url = "http://127.0.0.1:8000/v1/"
upstream_model = "meta-llama/Meta-Llama-3-8B-Instruct"
api_key_file = "{}"
connect_timeout_ms = 500
first_byte_timeout_ms = 10000
idle_timeout_ms = 20000
"#,
        key_file.display()
    );
    let ups = Upstreams::load(&write(&dir, "upstreams.toml", &text)).unwrap();
    assert_eq!(ups.models(), vec!["gpt-4o", "llama-3-8b"]);
    let gpt = ups.get("gpt-4o").unwrap();
    assert_eq!(gpt.kind, UpstreamKind::OpenAi);
    assert_eq!(gpt.upstream_model, "gpt-4o-2024-08-06");
    assert_eq!(gpt.api_key, None);
    assert_eq!(gpt.connect_timeout, Duration::from_millis(2_000));
    assert_eq!(gpt.first_byte_timeout, Duration::from_millis(30_000));
    assert_eq!(gpt.idle_timeout, Duration::from_millis(60_000));
    assert_eq!(
        gpt.chat_completions_url().as_str(),
        "https://api.openai.com/v1/chat/completions"
    );
    let llama = ups.get("llama-3-8b").unwrap();
    assert_eq!(
        llama.chat_completions_url().as_str(),
        "http://127.0.0.1:8000/v1/chat/completions"
    );
    assert_eq!(llama.connect_timeout, Duration::from_millis(500));
    assert_eq!(llama.first_byte_timeout, Duration::from_millis(10_000));
    assert_eq!(llama.idle_timeout, Duration::from_millis(20_000));
    assert!(llama.api_key.is_some());
    assert!(ups.get("claude").is_none());
}

#[test]
fn an_unknown_field_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "u.toml", &format!("{OK_ENTRY}timeout_ms = 5\n"));
    let text = load_error(&path);
    assert!(text.contains("timeout_ms"), "{text}");
    let path = write(
        &dir,
        "top.toml",
        &format!("{OK_ENTRY}\n[defaults]\nx = 1\n"),
    );
    let text = load_error(&path);
    assert!(text.contains("defaults"), "{text}");
    // A key pasted into the file is named as a field, its value not echoed.
    let path = write(
        &dir,
        "key.toml",
        &format!("{OK_ENTRY}api_key = \"sk-pasted-7781\"\n"),
    );
    let text = load_error(&path);
    assert!(
        text.contains("`api_key`") && !text.contains("sk-pasted"),
        "{text}"
    );
}

#[test]
fn a_missing_field_an_unknown_kind_and_no_upstream_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "u.toml",
        &OK_ENTRY.replace("upstream_model = \"gpt-4o-2024-08-06\"\n", ""),
    );
    assert!(load_error(&path).contains("upstream_model"));
    let path = write(
        &dir,
        "k.toml",
        &OK_ENTRY.replace("\"openai\"", "\"gemini\""),
    );
    let text = load_error(&path);
    assert!(text.contains("gemini") && text.contains("openai"), "{text}");
    let path = write(&dir, "e.toml", "# nothing\n");
    assert!(load_error(&path).contains("[[upstream]]"));
    let missing = dir.path().join("absent.toml");
    assert!(load_error(&missing).contains("cannot read"));
}

#[test]
fn a_bad_base_url_is_an_error_naming_the_upstream_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        ("api.openai.com/v1", "not a URL"),
        ("ftp://example.com/v1", "http or https"),
        ("https://example.com/v1?x=1", "no query"),
        ("https://user:pw@example.com/v1", "credentials"),
    ] {
        let path = write(
            &dir,
            "u.toml",
            &OK_ENTRY.replace("https://api.openai.com/v1", url),
        );
        let text = load_error(&path);
        assert!(
            text.contains("`gpt-4o`") && text.contains("`base_url`") && text.contains(says),
            "{url}: {text}"
        );
        assert!(!text.contains("pw@"), "credentials echoed: {text}");
    }
}

#[test]
fn bad_timeouts_and_duplicate_models_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "z.toml",
        &format!("{OK_ENTRY}first_byte_timeout_ms = 0\n"),
    );
    assert!(load_error(&path).contains("`first_byte_timeout_ms`"));
    let path = write(
        &dir,
        "big.toml",
        &format!("{OK_ENTRY}idle_timeout_ms = 600001\n"),
    );
    assert!(load_error(&path).contains("`idle_timeout_ms`"));
    let path = write(
        &dir,
        "neg.toml",
        &format!("{OK_ENTRY}connect_timeout_ms = -1\n"),
    );
    assert!(load_error(&path).contains("connect_timeout_ms"));
    let path = write(&dir, "dup.toml", &format!("{OK_ENTRY}{OK_ENTRY}"));
    let text = load_error(&path);
    assert!(
        text.contains("upstream 2") && text.contains("already has an upstream"),
        "{text}"
    );
    let path = write(
        &dir,
        "empty.toml",
        &OK_ENTRY.replace("model = \"gpt-4o\"", "model = \" \""),
    );
    assert!(load_error(&path).contains("`model` is empty"));
}

#[test]
fn a_missing_key_variable_or_file_is_named_and_both_sources_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let var = "POINTSMAN_UPSTREAM_TEST_MISSING_KEY";
    let path = write(
        &dir,
        "v.toml",
        &format!("{OK_ENTRY}api_key_env = \"{var}\"\n"),
    );
    let text = load_error(&path);
    assert!(
        text.contains(var) && text.contains("not set") && text.contains("`gpt-4o`"),
        "{text}"
    );

    let absent = dir.path().join("no-such-key");
    let path = write(
        &dir,
        "f.toml",
        &format!("{OK_ENTRY}api_key_file = \"{}\"\n", absent.display()),
    );
    let text = load_error(&path);
    assert!(
        text.contains("no-such-key") && text.contains("api_key_file"),
        "{text}"
    );

    let empty = write(&dir, "empty-key", "\n");
    let path = write(
        &dir,
        "ef.toml",
        &format!("{OK_ENTRY}api_key_file = \"{}\"\n", empty.display()),
    );
    assert!(load_error(&path).contains("is empty"));

    let path = write(
        &dir,
        "both.toml",
        &format!(
            "{OK_ENTRY}api_key_env = \"X\"\napi_key_file = \"{}\"\n",
            empty.display()
        ),
    );
    assert!(load_error(&path).contains("both set"));
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_token_and_never_shown() {
    let secret = "sk-test-4f9c2e7d1b8a6053";
    let var = "POINTSMAN_UPSTREAM_TEST_KEY";
    // SAFETY (of the test): no other test reads or writes this variable.
    std::env::set_var(var, format!("  {secret}\n"));
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[upstream]]\nmodel = \"gpt-4o\"\nkind = \"openai\"\nbase_url = \"{}\"\nupstream_model = \"stub-ok\"\napi_key_env = \"{var}\"\n",
        stub.base_url()
    );
    let ups = Upstreams::load(&write(&dir, "u.toml", &text)).unwrap();

    let shown = format!(
        "{ups:?} {:?} {:#?}",
        ups.get("gpt-4o").unwrap(),
        ups.get("gpt-4o").unwrap()
    );
    assert!(!shown.contains(secret), "key in Debug output: {shown}");
    assert!(shown.contains("redacted"), "{shown}");

    ups.forward(request(
        &["gpt-4o"],
        chat_body("hi", false),
        Duration::from_secs(20),
    ))
    .await
    .unwrap();
    assert_eq!(
        stub.stats().await["auth"]["stub-ok"],
        format!("Bearer {secret}")
    );

    // A key that a header cannot carry is refused without echoing it.
    std::env::set_var(var, "sk-line-one\nsk-line-two");
    let error = Upstreams::load(&write(&dir, "u.toml", &text))
        .unwrap_err()
        .to_string();
    assert!(error.contains(var) && !error.contains("sk-line"), "{error}");
}

#[test]
fn configs_built_in_code_are_checked_too() {
    let ok = UpstreamConfig::openai("a", "http://127.0.0.1:1/v1", "m").unwrap();
    let error = Upstreams::from_configs(vec![ok.clone(), ok.clone()]).unwrap_err();
    assert!(
        error.to_string().contains("already has an upstream"),
        "{error}"
    );
    let error = UpstreamConfig::openai("b", "not a url", "m").unwrap_err();
    assert!(
        error.to_string().contains("`b`") && error.to_string().contains("`base_url`"),
        "{error}"
    );
    let mut zero = ok;
    zero.connect_timeout = Duration::ZERO;
    let error = Upstreams::from_configs(vec![zero]).unwrap_err();
    assert!(error.to_string().contains("connect_timeout_ms"), "{error}");
}
