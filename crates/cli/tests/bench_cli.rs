//! `pointsman bench classify` with the real encoder: the JSON has the
//! promised shape. No speed is asserted (speed targets live in benches and
//! scripts).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(["bench", "classify", "--iterations", "1", "--warmup", "0"])
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_timing(case: &serde_json::Value, key: &str, n: u64) {
    let t = &case[key];
    for stat in ["median", "p10", "p90"] {
        let ms = t[stat]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}.{stat} in {case}"));
        assert!(ms > 0.0, "{key}.{stat} = {ms}");
    }
    assert_eq!(t["n"], n, "{case}");
}

#[test]
fn builtin_cases_report_encoder_and_classify_timings() {
    // The two batch-1 cases keep the test quick; batch32_mixed is the same code path.
    let v = bench(&["--cases", "batch1_short,batch1_long", "--with-texts"]);
    assert_eq!(v["iterations"], 1);
    let cases = v["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["batch1_short", "batch1_long"]);
    for c in cases {
        check_timing(c, "encoder_ms", 1);
        check_timing(c, "classify_ms", 1);
        assert_eq!(c["texts"].as_array().unwrap().len(), 1);
        assert!(c["tokens_mean"].as_f64().unwrap() > 0.0);
    }
    // The long prompt (over 400 characters) is read three times by classify
    // when the shipped heads use the instruction views.
    let long = &cases[1];
    assert_eq!(long["sequences_encoded"]["encoder"], 1);
    let expected = if v["views"] == true { 3 } else { 1 };
    assert_eq!(long["sequences_encoded"]["classify"], expected);
    assert_eq!(cases[0]["sequences_encoded"]["classify"], 1);
}

#[test]
fn a_prompts_file_gives_batch1_and_batched_cases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"a\",\"prompt\":\"What is the capital of Australia?\"}\n\
         {\"id\":\"b\",\"prompt\":\"Solve for x: 3x + 7 = 22.\"}\n\
         {\"id\":\"c\",\"prompt\":\"Write a haiku about autumn rain.\"}\n",
    )
    .unwrap();
    let v = bench(&["--prompts", path.to_str().unwrap(), "--batch-size", "2"]);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases[0]["name"], "file_batch1");
    assert_eq!(cases[0]["calls"], 3);
    check_timing(&cases[0], "classify_ms", 3);
    assert_eq!(cases[1]["name"], "file_batch2");
    assert_eq!(cases[1]["calls"], 2);
    check_timing(&cases[1], "encoder_ms", 2);
}

/// Whether this CPU runs an int8 kernel (AVX-512 F, BW, VL and VNNI; or
/// AVX2 and FMA), read from /proc/cpuinfo where there is one, so the check
/// does not share the code under test (std's feature detection).
fn cpu_has_int8() -> bool {
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(flags) = info.lines().find(|l| l.starts_with("flags")) {
            let has = |f: &str| flags.split_whitespace().any(|x| x == f);
            return (has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512_vnni"))
                || (has("avx2") && has("fma"));
        }
    }
    #[cfg(target_arch = "x86_64")]
    return (std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni"))
        || (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[test]
fn default_precision_is_int8_where_the_cpu_runs_an_int8_kernel_else_f32() {
    let int8 = cpu_has_int8();
    let v = bench(&["--cases", "batch1_short"]);
    assert_eq!(
        v["precision"],
        if int8 { "int8" } else { "f32" },
        "the CPU default: int8 with AVX-512 VNNI or AVX2 + FMA (this CPU: {int8}), else f32"
    );
    let v = bench(&["--cases", "batch1_short", "--precision", "f32"]);
    assert_eq!(
        v["precision"], "f32",
        "--precision f32 overrides the default"
    );
}

#[test]
fn precision_is_reported_and_falls_back_where_unsupported() {
    let v = bench(&["--cases", "batch1_short", "--precision", "int8"]);
    // A CPU without an int8 kernel runs f32 (with a warning) and says so.
    assert_eq!(v["precision"], if cpu_has_int8() { "int8" } else { "f32" });
    check_timing(&v["cases"][0], "classify_ms", 1);
}

#[test]
fn unknown_precision_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(["classify", "--precision", "fp64", "hello"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fp64") && err.contains("f32, bf16 or int8"),
        "{err}"
    );
}
