//! The prompt cache of `pointsman serve` end to end (the real binary, the
//! real encoder, a tonic client over 127.0.0.1): a repeated prompt skips
//! the encoder yet gets the same classification and its own decision and
//! store row; a reload applies to cached prompts; `--prompt-cache 0` turns
//! it off. Encoder work is read from the Prometheus endpoint:
//! `pointsman_batch_size_sum` is the number of prompts the encoder has read.

mod serve_support;

use std::sync::Mutex;

use pointsman_server::pb;
use serve_support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The counters this file watches, read from one scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    /// Prompts the encoder has read (the sum of the batch-size histogram).
    encoded: f64,
    hits: f64,
    misses: f64,
}

async fn counters(server: &Server) -> Counters {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.metrics.as_deref().expect("a metrics port");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("metrics lack {name}:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    };
    Counters {
        encoded: value("pointsman_batch_size_sum"),
        hits: value("pointsman_prompt_cache_hits_total"),
        misses: value("pointsman_prompt_cache_misses_total"),
    }
}

#[test]
fn a_repeated_prompt_skips_the_encoder_but_gets_its_own_decision_and_row() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The default cache size (no --prompt-cache flag).
    let server = Server::start(Options::default());
    let (p, q) = (PROMPTS[0], PROMPTS[2]);
    let ids = runtime(2).block_on(async {
        let mut c = server.client().await;
        let before = counters(&server).await;
        assert_eq!(
            (before.encoded, before.hits, before.misses),
            (0.0, 0.0, 0.0)
        );

        let first = c.route(route_request(p)).await.unwrap().into_inner();
        let after_first = counters(&server).await;
        assert_eq!(
            (after_first.encoded, after_first.hits, after_first.misses),
            (1.0, 0.0, 1.0),
            "the first sight of a prompt is encoded"
        );

        let second = c.route(route_request(p)).await.unwrap().into_inner();
        let after_second = counters(&server).await;
        assert_eq!(
            (after_second.encoded, after_second.hits, after_second.misses),
            (1.0, 1.0, 1.0),
            "the repeat is a hit and never reaches the encoder"
        );
        // Same encoder output, so the same classification and P(success);
        // but a decision of its own.
        assert_eq!(second.classification, first.classification);
        assert_eq!(second.candidates, first.candidates);
        assert_eq!(second.model, first.model);
        assert_ne!(second.decision_id, first.decision_id);

        // Classify reads the same cache.
        let classified = c
            .classify(pb::ClassifyRequest { prompt: p.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(classified.classification, first.classification);
        assert_eq!(counters(&server).await.encoded, 1.0);

        // RouteBatch: the cached prompt is a hit, the new one is encoded.
        let batch = c
            .route_batch(pb::RouteBatchRequest {
                requests: vec![route_request(p), route_request(q)],
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids = vec![first.decision_id, second.decision_id];
        for item in batch.items {
            let Some(pb::route_batch_item::Result::Response(r)) = item.result else {
                panic!("{item:?}")
            };
            ids.push(r.decision_id);
        }
        let now = counters(&server).await;
        assert_eq!(
            (now.encoded, now.hits, now.misses),
            (2.0, 3.0, 2.0),
            "RouteBatch encoded only the prompt it had not seen"
        );
        ids
    });

    // Every Route decision was logged, hits included, with the same embedding.
    let rows = export_all(&server.store);
    let logged: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(logged.len(), 4, "{logged:?}");
    for id in &ids {
        assert!(logged.contains(&id.as_str()), "{id} not in the store");
    }
    let embedding_of = |id: &str| {
        rows.iter().find(|r| r["id"] == id).unwrap()["embedding"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(embedding_of(&ids[0]).len(), 384);
    assert_eq!(embedding_of(&ids[1]), embedding_of(&ids[0]));
    assert_eq!(embedding_of(&ids[2]), embedding_of(&ids[0]));
    assert_ne!(embedding_of(&ids[3]), embedding_of(&ids[0]));
}

#[test]
fn a_reload_applies_to_cached_prompts() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = Server::start(Options::default());
    let p = PROMPTS[1];
    runtime(2).block_on(async {
        let mut c = server.client().await;
        let before = c.route(route_request(p)).await.unwrap().into_inner();
        assert_eq!(before.model, "cheap", "the first artifact prefers cheap");

        // Swap in an artifact that prefers `strong` (atomic rename) and reload.
        let tmp = server.dir.path().join("router.json.tmp");
        // `cheap` always fails, `strong` always succeeds: the target policy
        // now picks `strong`.
        write_artifact_with_scores(&tmp, 0.0, 1.0);
        std::fs::rename(&tmp, &server.router).unwrap();
        let mut admin = pb::admin_client::AdminClient::new(server.channel().await);
        let v = admin
            .reload(pb::ReloadRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.versions.unwrap().generation, 2);

        let encoded = counters(&server).await.encoded;
        let after = c.route(route_request(p)).await.unwrap().into_inner();
        let now = counters(&server).await;
        assert_eq!(now.encoded, encoded, "the prompt was still a cache hit");
        assert_eq!(now.hits, 1.0);
        // The encoder's output is reused; the decision is the new artifact's.
        assert_eq!(after.classification, before.classification);
        assert_eq!(after.versions.as_ref().unwrap().generation, 2);
        assert_eq!(after.model, "strong", "{:?}", after.candidates);
        assert_ne!(after.candidates, before.candidates);
    });
}

#[test]
fn prompt_cache_0_sends_every_repeat_to_the_encoder() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = Server::start(Options {
        artifact: true,
        extra: vec!["--prompt-cache".into(), "0".into()],
    });
    let p = PROMPTS[3];
    runtime(2).block_on(async {
        let mut c = server.client().await;
        let first = c.route(route_request(p)).await.unwrap().into_inner();
        let second = c.route(route_request(p)).await.unwrap().into_inner();
        c.classify(pb::ClassifyRequest { prompt: p.into() })
            .await
            .unwrap();
        let now = counters(&server).await;
        assert_eq!(
            (now.encoded, now.hits, now.misses),
            (3.0, 0.0, 0.0),
            "with the cache off every call is encoded and nothing is counted"
        );
        // The encoder is deterministic for a prompt encoded alone.
        assert_eq!(second.classification, first.classification);
        assert_eq!(second.model, first.model);
    });
}
