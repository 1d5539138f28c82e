//! Acknowledged outcomes survive a crash that loses the page cache (issue
//! 13, item 13).
//!
//! serve_grpc.rs's `kill -9` test cannot show this: the kernel keeps a
//! killed process's writes in its page cache, so that test passes even with
//! `synchronous=OFF`. Here the store lives on an ext4 filesystem in a loop
//! device. After `kill -9` we copy the loop device's backing file without
//! unmounting: the copy holds what ext4 had sent to its "disk" by then, and
//! not what was still only in the page cache. We mount the copy (ext4
//! replays its journal, as after a power cut) and export the store from it.
//! The live filesystem is mounted with `commit=300`, so no periodic journal
//! commit writes un-fsynced data out during the test: only fsync does.
//!
//! Needs root (mount, loop devices) and mkfs.ext4. Where they are missing
//! the test prints `SKIPPED` and passes; docs/RELIABILITY.md says so.

mod serve_support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pointsman_server::pb;
use serve_support::*;

/// Runs a command; `Err` carries what it printed when it fails.
fn run(program: &str, args: &[&OsStr]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An ext4 image mounted through a loop device; unmounted on drop (the
/// loop device goes with it: `mount -o loop` sets autoclear).
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn new(image: &Path, dir: PathBuf, options: &str) -> Result<Mounted, String> {
        std::fs::create_dir_all(&dir).unwrap();
        let options = format!("loop,{options}");
        run(
            "mount",
            &[
                OsStr::new("-o"),
                options.as_ref(),
                image.as_os_str(),
                dir.as_os_str(),
            ],
        )?;
        Ok(Mounted { dir })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &[self.dir.as_os_str()]);
    }
}

#[test]
fn acknowledged_outcomes_survive_losing_the_page_cache() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let live = run(
        "mkfs.ext4",
        &[OsStr::new("-q"), OsStr::new("-F"), image.as_os_str()],
    )
    .and_then(|()| Mounted::new(&image, work.path().join("live"), "commit=300"));
    let live = match live {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "SKIPPED acknowledged_outcomes_survive_losing_the_page_cache: \
                 no loop-mounted ext4 here (needs root and mkfs.ext4): {why}"
            );
            return;
        }
    };
    let mut server = Server::start_with_store(Options::default(), Some(live.dir.join("store.db")));
    let n = 40;
    let acked: Vec<(String, String, f64)> = runtime(2).block_on(async {
        let mut c = server.client().await;
        let mut acked = Vec::new();
        for i in 0..n {
            let prompt = format!("{} (call {i})", PROMPTS[i % PROMPTS.len()]);
            let r = c.route(route_request(&prompt)).await.unwrap().into_inner();
            let score = (i % 5) as f64 / 4.0;
            c.report_outcome(pb::ReportOutcomeRequest {
                decision_id: r.decision_id.clone(),
                model: r.model.clone(),
                score,
                ..Default::default()
            })
            .await
            .unwrap();
            acked.push((r.decision_id, r.model, score));
        }
        acked
    });
    server.signal("-9");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    // The "disk" at the moment of the crash. Unmounting first would write
    // the page cache back, which is exactly what a power cut does not do.
    let crash_image = work.path().join("after-crash.img");
    std::fs::copy(&image, &crash_image).unwrap();
    drop(live);
    let crashed = Mounted::new(
        &crash_image,
        work.path().join("crashed"),
        "errors=remount-ro",
    )
    .expect("mounting the disk as the crash left it");
    let store = crashed.dir.join("store.db");
    let out = pointsman(&["store", "export", "--store", store.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: std::collections::HashMap<String, serde_json::Value> =
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["id"].as_str().unwrap().to_string(), v)
            })
            .collect();
    let missing: Vec<&str> = acked
        .iter()
        .filter(|(id, model, score)| {
            exported
                .get(id)
                .and_then(|d| d["outcomes"][model.as_str()]["score"].as_f64())
                != Some(*score)
        })
        .map(|(id, _, _)| id.as_str())
        .collect();
    eprintln!(
        "after the crash: {} of {n} acknowledged outcomes on disk",
        n - missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {n} acknowledged outcomes lost with the page cache: {missing:?}",
        missing.len()
    );
}
