//! bl-sim: the unchanged core at 1,000 peers in virtual time. bl-sim checks its invariants
//! while it runs (only chunks the seed produced are played, each peer's output is in order,
//! every buffer stays bounded) and exits 1 naming the seed when one fails.

mod common;

use common::*;

fn sim(args: &[&str]) -> (serde_json::Value, String) {
    let out = run("bl-sim", args, b"");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "bl-sim {args:?} failed: {stderr}");
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bl-sim printed no JSON ({e}): {stdout}"));
    (json, stdout)
}

fn f(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64().unwrap_or_else(|| panic!("no {path:?} in {v}"))
}

/// 1,000 peers joining over 2 s, 20 s of stream, 1 % loss: the JSON report of seed `seed`.
fn thousand_peers(seed: &str, more: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--peers",
        "1000",
        "--seconds",
        "20",
        "--join-over",
        "2",
        "--loss",
        "1%",
        "--seed",
        seed,
        "--json",
        "-q",
    ];
    args.extend_from_slice(more);
    sim(&args).0
}

#[test]
fn thousand_peers_over_several_seeds_stay_within_bounds() {
    let mut amplification = Vec::new();
    for seed in ["1", "2", "3"] {
        eprintln!("bl-sim seed {seed}");
        // The brief's bounds (docs/PERFORMANCE.md gives the measured values).
        let bounds = [
            "--expect-continuity",
            "0.999",
            "--expect-amplification",
            "2",
        ];
        let o = thousand_peers(seed, &bounds);
        assert_eq!(f(&o, &["forged_chunks_played"]), 0.0);
        assert_eq!(f(&o, &["peers_measured"]), 1000.0, "seed {seed}");
        amplification.push(f(&o, &["source_amplification"]));
        // No stripe looked withheld in an honest swarm: once calm, the seed keeps one root
        // per stripe (core::root_release).
        let settled = o["seed_log"].as_array().is_some_and(|a| {
            a.iter().any(|n| {
                n["what"]
                    .as_str()
                    .is_some_and(|w| w.contains("the swarm is calm"))
            })
        });
        assert!(settled, "seed {seed}: the seed never settled: {o}");
        assert!(f(&o, &["latency_ms", "p50"]) > 0.0, "seed {seed}: {o}");
        // Settled: the chunks played from 5 s after each join, a part of all of them.
        let settled = f(&o, &["latency_settled_ms", "p50"]);
        assert!(settled > 0.0, "seed {seed}: {o}");
        assert!(
            f(&o, &["latency_settled_ms", "max"]) <= f(&o, &["latency_ms", "max"]),
            "seed {seed}: {o}"
        );
        assert!(
            f(&o, &["peers_never_started"]) == 0.0,
            "seed {seed}: every peer plays: {o}"
        );
        // Nearer neighbours (core::proximity): without the probes, neighbours were 0.88-0.90
        // of any two peers' one-way delay on these seeds; with them, 0.81-0.83.
        let (near, any) = (
            f(&o, &["link_delay_ms", "neighbour"]),
            f(&o, &["link_delay_ms", "any_pair"]),
        );
        assert!(
            near < 0.855 * any,
            "seed {seed}: neighbours not nearer: {o}"
        );
        // Buffers: what the invariant bounded, reported.
        let max = o["max_buffered"].as_array().unwrap();
        assert!(max[0].as_u64().unwrap() <= 1024, "history {o}");
        // One signature check per chunk in each of the simulator's two lanes, not one per
        // peer per chunk.
        let checked = f(&o, &["signatures_checked"]);
        assert!(
            checked <= 2.0 * f(&o, &["chunks_produced"]) * 1.01 + 10.0,
            "{o}"
        );
    }
    // Once the swarm is calm the seed keeps one root per stripe, and lets the rest of its
    // budget's roots go, and extra roots for stripes still forming, one per 4 s calm spell.
    // Measured 1.240, 1.432 and 1.232 (seed 2 takes two extra roots while the peers join);
    // 1.442, 1.554 and 1.435 while the seed kept its whole budget of five root slots, and
    // over 1.65 when it kept its extra roots too. Hence the mean.
    let mean = amplification.iter().sum::<f64>() / amplification.len() as f64;
    assert!(mean <= 1.4, "source amplification {amplification:?}");
}

/// A small swarm does not settle: the seed's spare slots feed leaves of the stripe no viewer
/// is a member of, and let go (d418712) they had nobody to feed them: 24 chunks skipped,
/// latency p99 696 -> 1,855 ms.
#[test]
fn a_small_swarm_keeps_the_seeds_whole_budget() {
    let (o, _) = sim(&[
        "--peers",
        "6",
        "--seconds",
        "20",
        "--seed",
        "6",
        "--json",
        "-q",
    ]);
    assert_eq!(f(&o, &["chunks_skipped"]), 0.0, "{o}");
    // Five root slots in use, as budgeted (4.16 when it settled).
    assert!(f(&o, &["seed_children", "mean"]) > 4.5, "{o}");
    let log = o["seed_log"].to_string();
    assert!(!log.contains("the swarm is calm"), "{o}");
}

/// As the seed settles (seed 4: at 5.2 s) it lets go of its second root of stripe 0, whose
/// only older member is the stripe's other root, full of younger members. Unless a member
/// that lost a place as high as a full member's may take its youngest member child's, it
/// asked that root and the seed in turn, was refused by both, and its 63–66-peer subtree lived
/// on repairs until the seed took another root at 17.7 s: 7.33 % of peers detached (2.17 %
/// with it).
#[test]
fn a_root_the_seed_lets_go_finds_a_parent() {
    let o = thousand_peers("4", &[]);
    let log = o["seed_log"].to_string();
    assert!(
        log.contains("let 10.0.0.2:7000 go as a root of stripe 0"),
        "{o}"
    );
    let detached = f(&o, &["tree_depth", "detached"]);
    assert!(detached < 0.04, "detached {detached}: {o}");
}

/// The default model (peers joining over 5 s, 30 s of stream), seed 5: its stripe 1 root at
/// the seed has a 2.17 Mb/s uplink. When a peer could spend as much on repairs as on pushes,
/// that root overfilled its uplink, dropped its own pushes, and 936 of the 1,000 peers ended
/// below 99.9 % (98.93 % in all).
/// A peer's first 5 s are its startup: a stream that ends before any peer has been in the
/// swarm that long has latencies, but no settled ones.
#[test]
fn latency_settled_leaves_out_each_peers_first_five_seconds() {
    let (o, _) = sim(&[
        "--peers",
        "100",
        "--seconds",
        "3",
        "--join-over",
        "1",
        "--seed",
        "1",
        "--json",
        "-q",
    ]);
    assert!(f(&o, &["latency_ms", "p50"]) > 0.0, "{o}");
    assert_eq!(f(&o, &["latency_settled_ms", "max"]), 0.0, "{o}");
}

/// Fifty peers join over 1 s and the broadcast begins 1 s after the last, as when viewers
/// start before the encoder: every one plays from the stream's first chunk. In these seeds
/// (no loss) a peer whose first chunk was not seq 0 took a later Welcome's position and
/// waited for the second keyframe, a GOP lost (18 of 200 seeds; the continuity figure,
/// counted from each peer's start, did not show it).
#[test]
fn peers_that_join_before_the_broadcast_play_it_from_its_first_chunk() {
    for seed in ["7", "13", "37", "41", "42", "48"] {
        eprintln!("bl-sim seed {seed}");
        let (o, _) = sim(&[
            "--peers",
            "50",
            "--seconds",
            "8",
            "--join-over",
            "1",
            "--stream-at",
            "2",
            "--loss",
            "0",
            "--seed",
            seed,
            "--json",
            "-q",
        ]);
        assert_eq!(f(&o, &["peers_joined_before_stream"]), 50.0, "{o}");
        assert_eq!(f(&o, &["late_starts"]), 0.0, "seed {seed}: {o}");
        assert_eq!(f(&o, &["continuity"]), 1.0, "seed {seed}: {o}");
    }
}

#[test]
fn a_weak_stripe_root_still_carries_its_stripe() {
    let (o, _) = sim(&[
        "--seed",
        "5",
        "--json",
        "-q",
        "--expect-continuity",
        "0.999",
        "--expect-amplification",
        "2",
    ]);
    assert!(f(&o, &["peers_below_999"]) <= 20.0, "{o}");
}

#[test]
fn forgers_are_banned_and_never_played_free_riders_and_churn_survived() {
    let (o, _) = sim(&[
        "--peers",
        "300",
        "--seconds",
        "15",
        "--join-over",
        "2",
        "--forgers",
        "3",
        "--free-riders",
        "10%",
        "--churn",
        "60",
        "--seed",
        "5",
        "--json",
        "-q",
    ]);
    assert!(f(&o, &["forged_chunks_sent"]) > 0.0, "{o}");
    assert_eq!(f(&o, &["forged_chunks_played"]), 0.0);
    assert!(
        f(&o, &["bans"]) >= 3.0,
        "every forger is banned somewhere: {o}"
    );
    assert!(f(&o, &["chunks_withheld_by_free_riders"]) > 0.0, "{o}");
    assert!(f(&o, &["departures"]) >= 10.0, "{o}");
    assert!(f(&o, &["continuity"]) > 0.95, "{o}");
}

#[test]
fn the_same_seed_gives_identical_output() {
    let args = [
        "--peers",
        "200",
        "--seconds",
        "6",
        "--join-over",
        "1",
        "--churn",
        "30",
        "--forgers",
        "1",
        "--seed",
        "42",
        "--json",
        "-q",
    ];
    let (_, first) = sim(&args);
    let (_, second) = sim(&args);
    assert_eq!(first, second, "same seed, different output");
    let mut other = args;
    other[11] = "43";
    let (_, third) = sim(&other);
    assert_ne!(first, third, "a different seed must give a different run");
}

#[test]
fn bad_arguments_are_named() {
    for (args, what) in [
        (&["--loss", "2"][..], "--loss"),
        (&["--bitrate", "fast"][..], "--bitrate"),
        (&["--stripes", "0"][..], "--stripes"),
        (&["--peers", "0"][..], "--peers"),
        (&["--seconds", "0"][..], "above 0"),
        (&["--expect-continuity", "1.5"][..], "--expect-continuity"),
        (&["--stream-at", "inf"][..], "--stream-at"),
    ] {
        let out = run("bl-sim", args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

/// 5 % liars (sim::adversary: forged Haves claiming everything at depth 0 with room to
/// spare, withheld pushes and repairs, eclipse lists, replayed old chunks, forged end
/// records) among 500 peers. The honest peers' figures are what count; the bounds are
/// generous (docs/PERFORMANCE.md has the measured ones).
#[test]
fn liars_cost_the_honest_peers_little() {
    let (o, _) = sim(&[
        "--peers",
        "500",
        "--seconds",
        "15",
        "--join-over",
        "2",
        "--liars",
        "5%",
        "--seed",
        "3",
        "--json",
        "-q",
    ]);
    assert!(f(&o, &["liars"]) >= 10.0, "{o}");
    assert!(f(&o, &["lies_sent"]) > 0.0, "{o}");
    assert!(
        f(&o, &["bans"]) > 0.0,
        "forged end records get liars banned: {o}"
    );
    assert_eq!(f(&o, &["forged_chunks_played"]), 0.0);
    // The aim. Measured 0.99997 (seed 3, at d163205; 0.99930 before it); 0.9883
    // before the liars' claims were held to the pace of the stream and a trickling parent was
    // replaced; without the defences of 2a80f5a and after, 1,000 peers with 5 % liars played
    // 94.9 %.
    assert!(f(&o, &["continuity"]) > 0.999, "{o}");
    assert!(f(&o, &["latency_ms", "p50"]) < 1500.0, "{o}");
    // Eclipse lists (liars name only liars) do not pull honest peers among them: liars were
    // 1.2 % of honest peers' neighbours, and 0.23 % of samples had liars as the majority.
    assert!(f(&o, &["liar_neighbour_share"]) < 0.10, "{o}");
    assert!(f(&o, &["peers_mostly_among_liars"]) < 0.02, "{o}");
}

/// The first 4 of 500 peers withhold (sim::adversary): they take the seed's root slots,
/// answer its audits, announce depth 1 and children, and forward nothing to anyone else. The
/// audits and the barren rule cannot see them; the stripes' starved members can, and the seed
/// takes extra roots for those stripes.
#[test]
fn withholders_in_the_seeds_root_slots_get_their_stripes_extra_roots() {
    let args = "--peers 500 --seconds 15 --join-over 2 --withholders 4 --seed 1 --json -q";
    let (o, _) = sim(&args.split(' ').collect::<Vec<_>>());
    assert!(f(&o, &["extra_roots"]) >= 1.0, "{o}");
    // Its stripes' starved members still hung below the withholders: the roots are kept.
    assert_eq!(f(&o, &["extra_roots_released"]), 0.0, "{o}");
    // The seed's log says when it took each, and which stripes it keeps them for, and they
    // are held beyond its budget of 5 root slots.
    let log: Vec<&str> = o["seed_log"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["what"].as_str()).collect())
        .unwrap_or_default();
    let took = log
        .iter()
        .filter(|w| w.contains("as an extra root"))
        .count();
    assert_eq!(took as f64, f(&o, &["extra_roots"]), "{o}");
    assert!(log.iter().any(|w| w.contains("looks withheld")), "{o}");
    assert!(f(&o, &["seed_children", "max"]) > 5.0, "{o}");
    // Measured 0.9979 (seed 1); 0.592 before the seed took extra roots, with two of the four
    // stripes rooted at withholders for the whole run, 0.936 while the seed counted only
    // detached members as starved (it found out a second later), 0.987 while it waited for a
    // starved member to ask instead of offering the slot, 0.9934 before it sent the new root
    // the chunks the stripe had been starved of, and 0.9959 while it waited 0.5 s, not
    // 0.25 s, to call a stripe starved, and 0.9966 while it counted members that had only
    // just joined as fed. The rest is the first seconds, while the stripe's members find out
    // and its tree re-forms.
    assert!(f(&o, &["continuity"]) > 0.997, "{o}");
}
