//! bl-stat against a real 10-peer swarm on 127.0.0.1: what it reports must be what each
//! node says of itself in its own --stats-json lines.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::swarm::*;
use common::*;

/// The node's --stats-json lines so far.
fn reports(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn f(v: &serde_json::Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Counters only grow, so bl-stat's answer must lie between the node's own reports written
/// just before and just after it asked.
const GROWING: &[&str] = &[
    "bytes_sent",
    "bytes_received",
    "chunk_bytes_sent",
    "chunks_received",
    "chunks_duplicate",
    "chunks_played",
    "chunks_skipped",
    "chunks_forged",
    "stream_bytes",
    "uptime_s",
];

#[test]
fn bl_stat_agrees_with_every_nodes_own_stats_json() {
    let dir = temp_dir("stat10");
    let (key, _) = key_file(&dir, 4);
    let source = dir.join("source.ts");
    std::fs::write(&source, generated_ts(20)).unwrap();
    let mut seed = start_seed(&dir, &source, &key, &["--stats-interval", "0.5"]);
    let mut peers: Vec<Peer> = (0..10)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(100));
            let seed_arg = (100 + i).to_string();
            start_peer(
                &dir,
                &format!("peer{i}"),
                &seed.link,
                &["--stats-interval", "0.5", "--rng-seed", &seed_arg, "-q"],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));

    let mut files = vec![(seed.addr, seed.stderr_path.clone())];
    files.extend(peers.iter().map(|p| (p.addr, p.err_path.clone())));
    let before: Vec<usize> = files.iter().map(|(_, p)| reports(p).len()).collect();
    let mut args: Vec<String> = vec!["--json".into()];
    args.extend(files.iter().map(|(a, _)| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("bl-stat", &args, b"");
    assert!(
        out.status.success(),
        "bl-stat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let during: Vec<usize> = files.iter().map(|(_, p)| reports(p).len()).collect();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11, "one object per node: {lines:?}");

    // Wait for every node to write one more report after bl-stat returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    for ((addr, path), (&b, &d)) in files.iter().zip(before.iter().zip(&during)) {
        while reports(path).len() <= d {
            assert!(
                Instant::now() < deadline,
                "{addr} wrote no report after bl-stat"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let own = reports(path);
        assert!(b > 0, "{addr} had written no report before bl-stat asked");
        let (earlier, later) = (&own[b - 1], &own[d]);
        let seen = lines
            .iter()
            .find(|l| l["addr"] == addr.to_string())
            .unwrap_or_else(|| panic!("bl-stat did not report {addr}: {lines:?}"));
        for field in ["role", "stream_id", "addr"] {
            assert_eq!(seen[field], later[field], "{addr}: {field}");
        }
        for field in GROWING {
            let (lo, x, hi) = (f(earlier, field), f(seen, field), f(later, field));
            assert!(
                lo <= x && x <= hi,
                "{addr}: bl-stat says {field} = {x}, its own reports say {lo} then {hi}"
            );
        }
    }
    assert!(
        lines
            .iter()
            .filter(|l| l["role"] == "peer")
            .all(|l| l["chunks_played"].as_u64().unwrap() > 0),
        "every peer is playing"
    );

    // The swarm walk finds every node through peer exchange alone.
    let walk = run(
        "bl-stat",
        &["--swarm", &seed.addr.to_string(), "--json"],
        b"",
    );
    assert!(
        walk.status.success(),
        "{}",
        String::from_utf8_lossy(&walk.stderr)
    );
    let walked: Vec<serde_json::Value> = String::from_utf8(walk.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &walked.last().unwrap()["summary"];
    assert_eq!(summary["seeds"], 1, "{summary}");
    assert_eq!(summary["peers"], 10, "walk found {summary}");
    for (addr, _) in &files {
        assert!(
            walked.iter().any(|l| l["addr"] == addr.to_string()),
            "walk missed {addr}"
        );
    }
    // On loopback every peer was seen at its own address: public, in the JSON and the table.
    for l in walked.iter().filter(|l| l["role"] == "peer") {
        assert_eq!(l["reachability"], "public", "{l}");
    }
    let table = run("bl-stat", &["--swarm", &seed.addr.to_string()], b"");
    let table = String::from_utf8_lossy(&table.stdout);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("REACH"), "{table}");
    let public_rows = table
        .lines()
        .filter(|l| l.contains(" peer public "))
        .count();
    assert_eq!(public_rows, 10, "{table}");

    // After the stream: the summary of the saved --stats-json lines is the sum of the
    // nodes' final reports.
    let end = Instant::now() + Duration::from_secs(90);
    for p in peers.iter_mut() {
        assert!(p.wait(end).success());
    }
    assert!(seed.wait(end).success());
    let mut input_args = vec![
        "--input".to_string(),
        seed.stderr_path.display().to_string(),
    ];
    for p in &peers {
        input_args.push("--input".into());
        input_args.push(p.err_path.display().to_string());
    }
    input_args.push("--json".into());
    let input_args: Vec<&str> = input_args.iter().map(String::as_str).collect();
    let agg = run("bl-stat", &input_args, b"");
    assert!(agg.status.success());
    let agg_lines = String::from_utf8(agg.stdout).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(agg_lines.lines().last().unwrap()).unwrap()
            ["summary"]
            .clone();
    let finals: Vec<serde_json::Value> = files.iter().map(|(_, p)| last_json(p)).collect();
    let sum = |field: &str| finals.iter().map(|v| num(v, field)).sum::<u64>();
    assert_eq!(summary["nodes"], 11);
    assert_eq!(summary["bytes_sent"].as_u64().unwrap(), sum("bytes_sent"));
    assert_eq!(
        summary["chunks_skipped"].as_u64().unwrap(),
        sum("chunks_skipped")
    );
    let seed_final = &finals[0];
    let amplification =
        num(seed_final, "bytes_sent") as f64 / num(seed_final, "stream_bytes") as f64;
    assert!((summary["source_amplification"].as_f64().unwrap() - amplification).abs() < 0.001);

    // The same from stdin, with garbage lines skipped and counted.
    let mut piped = std::fs::read(&peers[0].err_path).unwrap();
    piped.extend_from_slice(b"{\"not\": \"a report\"}\nrandom words\n");
    let one = run("bl-stat", &["--input", "-"], &piped);
    assert!(one.status.success());
    let err = String::from_utf8_lossy(&one.stderr);
    assert!(
        err.contains("skipped 1 JSON lines"),
        "garbage must be counted: {err}"
    );
    let table = String::from_utf8_lossy(&one.stdout);
    assert!(
        table.contains("swarm: 1 nodes (0 seeds, 1 peers)"),
        "{table}"
    );
}

#[test]
fn bl_stat_names_nodes_that_do_not_answer() {
    let silent = free_addr();
    let started = Instant::now();
    let out = run("bl-stat", &[&silent.to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("bl-stat: {silent}: no answer")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
    let usage = Command::new(bin("bl-stat")).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("give node addresses"));
}

/// `--watch` before an address takes no value unless written `--watch=SECS`: the address is
/// watched (it was read as SECS, a usage error); `--limit` without `--swarm` is a usage error.
#[test]
fn watch_before_an_address_watches_it_and_limit_needs_swarm() {
    let silent = free_addr().to_string();
    let watch = |flag: &str| {
        Command::new(bin("bl-stat"))
            .args([flag, &silent, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for flag in ["--watch=0.5", "--watch"] {
        let mut child = watch(flag);
        // Each refresh waits about a second for the silent address.
        let stdout = child.stdout.take().unwrap();
        let lines = lines_within(stdout, 2, Duration::from_secs(30));
        let _ = child.kill();
        let err = child.wait_with_output().unwrap().stderr;
        assert!(
            lines.len() == 2 && lines.iter().all(|l| l.contains(&silent)),
            "{flag}: {lines:?} {}",
            String::from_utf8_lossy(&err)
        );
    }
    let limit = run("bl-stat", &["--limit", "3", &silent], b"");
    assert_eq!(limit.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&limit.stderr).contains("--swarm"));
}

/// A node bound to 0.0.0.0 reports that address of itself: bl-stat's JSON, like its table,
/// gives the address it asked instead (they disagreed once), and the rate columns say kbit/s,
/// which is what they hold.
#[test]
fn a_node_bound_to_every_address_is_named_as_asked_in_json_and_table() {
    let dir = temp_dir("stat-any");
    let (key, _) = key_file(&dir, 3);
    let (_, source) = write_source(&dir, 8);
    let port = free_addr().port();
    let _seed = start_seed_at(&dir, &source, &key, &format!("0.0.0.0:{port}"), &[]);
    let asked = format!("127.0.0.1:{port}");
    let json = run("bl-stat", &[&asked, "--json"], b"");
    let line = String::from_utf8_lossy(&json.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{e}: {line} {}", String::from_utf8_lossy(&json.stderr)));
    assert_eq!(v["addr"], asked.as_str(), "{v}");
    assert_eq!(v["role"], "seed", "{v}");
    let table = run("bl-stat", &[&asked], b"");
    let table = String::from_utf8_lossy(&table.stdout);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("IN_KBIT/S") && header.contains("OUT_KBIT/S"),
        "{table}"
    );
    assert!(
        table.lines().skip(1).any(|l| l.starts_with(&asked)),
        "{table}"
    );
}
