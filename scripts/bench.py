#!/usr/bin/env python3
"""Swarm benchmark on real processes over loopback; prints one JSON summary (run via bench.sh).

ffmpeg -re (a pre-encoded H.264+AAC file at --rate) | bl-chunk | bl-seed, and --peers bl-peer
processes writing to /dev/null. Those peers start before the stream, so their figures are
steady state; --late more join halfway through, for the startup figure. Collects each node's
--stats-json and, from the kernel, the CPU time and peak RSS of every process. Latency
percentiles pool every chunk of every peer (the peers' histograms, merged); the distribution
is drawn as an SVG beside the JSON in bench-out/. With --markers, scripts/ts-mark stamps
marker packets into the encoder's pipe every 0.2 s and the peers write to pipes this script
reads as a player would: marker_latency_ms is glass-to-glass, bl-chunk's wait included.
With --stall I:AT:MS, peer I is stopped (SIGSTOP) AT seconds into the stream for MS ms, as a
busy machine may leave a process unrun, and its parents, children and figures show the cost.
`machine` says how much CPU the hypervisor took (steal) and whether the kernel dropped any
datagram; with --stats-every, peers_of_note says when each peer's first duplicate, request
and stall came, on the stream's clock.
Usage: scripts/bench.sh [--peers 50] [--rate 2000] [--seconds 30] [--late 3] [--markers]
                        [--source frames|bursts] [--stall I:AT:MS]... [--stats-every SECS]
"""
import argparse, json, os, resource, statistics, struct, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--peers", type=int, default=50)
ap.add_argument("--rate", type=int, default=2000, help="stream bit rate in kbit/s")
ap.add_argument("--seconds", type=int, default=30)
ap.add_argument("--late", type=int, default=3, help="peers that join halfway, for startup")
ap.add_argument("--keep", action="store_true", help="keep the work directory")
ap.add_argument("--markers", action="store_true",
                help="also time marker packets (scripts/ts-mark) from the encoder's pipe to every "
                     "peer's stdout: glass-to-glass, bl-chunk's wait included")
ap.add_argument("--source", choices=["frames", "bursts"], default="frames",
                help="frames (default): the test file is muxed with no MPEG-TS interleaving delay, "
                     "so ffmpeg -re writes it a frame at a time as a live encoder does (measured: "
                     "reads of ~8 KB a median 40 ms apart); bursts: muxed with ffmpeg's default 0.7 s "
                     "delay, which ffmpeg -re replays in bursts of 20-60 KB every 70-190 ms (this "
                     "script's only source before 2026-12-06)")
ap.add_argument("--stats-every", type=float, metavar="SECS",
                help="every node also prints its figures every SECS seconds (--stats-interval), so "
                     "peers_of_note says when each peer's first duplicate, request and stall came")
ap.add_argument("--stall", action="append", default=[], metavar="I:AT:MS",
                help="stop peer I (SIGSTOP) AT seconds into the stream for MS ms (repeatable)")
args = ap.parse_args()
stalls = []
for spec in args.stall:
    try:
        i, at, ms = spec.split(":")
        stalls.append((int(i), float(at), int(ms)))
    except ValueError:
        ap.error(f"--stall {spec}: expected I:AT:MS, as 3:10:300")
    if not 0 <= stalls[-1][0] < args.peers:
        ap.error(f"--stall {spec}: no peer {stalls[-1][0]} among {args.peers}")
    if not 0 <= stalls[-1][1] < args.seconds:
        ap.error(f"--stall {spec}: {stalls[-1][1]} s is not within the {args.seconds} s stream")

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
bin_ = lambda n: os.path.join(root, "target", "release", n)
work = tempfile.mkdtemp(prefix="bl-bench-")
out_dir = os.path.join(root, "bench-out")
os.makedirs(out_dir, exist_ok=True)

# A file at the target rate, encoded once and cached.
# The mpegts muxer holds packets up to -muxdelay (0.7 s by default) to interleave audio and
# video; a file muxed so is replayed by ffmpeg -re in bursts that a live encoder's pipe does
# not have (ffmpeg encoding testsrc2 live, -tune zerolatency: reads of ~8 KB, a median 27 ms
# apart).
frames = args.source == "frames"
src = os.path.join(out_dir, f"src-{args.rate}k-{args.seconds}s{'-frames' if frames else ''}.ts")
mux = ["-muxdelay", "0", "-muxpreload", "0"] if frames else []
if not os.path.exists(src):
    v = max(100, args.rate - 96)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(args.seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                    "-b:v", f"{v}k", "-maxrate", f"{v}k", "-bufsize", f"{v // 2}k",
                    "-c:a", "aac", "-b:a", "96k", *mux, "-f", "mpegts", src], check=True)

def spawn(cmd, **kw):
    return subprocess.Popen(cmd, **kw)

# Seed first, on a fixed free port, with an empty pipe we feed later.
seed_err = open(os.path.join(work, "seed.err"), "w+")
key = os.path.join(work, "k")
chunker = spawn([bin_("bl-chunk"), "--key", key, "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
every = ["--stats-interval", str(args.stats_every)] if args.stats_every else []
seed = spawn([bin_("bl-seed"), "--listen", "127.0.0.1:0", "--stats-json", *every, "--rng-seed", "1"],
             stdin=chunker.stdout, stdout=subprocess.DEVNULL, stderr=seed_err)
link = None
for _ in range(100):
    seed_err.seek(0)
    for w in seed_err.read().split():
        if w.startswith("bl://"):
            link = w
    if link:
        break
    time.sleep(0.05)
assert link, "seed printed no link"

MAGIC = b"BLTSMARK"
marks = []  # per peer: [(marker seq, latency ms)]

def read_markers(pipe, found):
    """Reads a peer's stdout as a player would, noting each marker's latency on arrival."""
    tail = b""
    while data := pipe.read1(65536):
        now = time.time_ns()
        buf = tail + data
        at = buf.find(MAGIC)
        while at >= 0 and at + 24 <= len(buf):
            seq, sent = struct.unpack(">QQ", buf[at + 8:at + 24])
            found.append((seq, (now - sent) / 1e6))
            at = buf.find(MAGIC, at + 24)
        tail = buf[at:] if at >= 0 else buf[-23:]

def machine():
    """The machine's CPU time by kind (/proc/stat, in ticks) and the kernel's UDP error counts
    (/proc/net/snmp): read before and after, they say whether the hypervisor took the CPUs
    away (steal) and whether any datagram was dropped (the zero-repairs aim assumes none)."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    with open("/proc/net/snmp") as f:
        udp = [l.split() for l in f if l.startswith("Udp:")]
    return cpu, dict(zip(udp[0][1:], map(int, udp[1][1:])))
machine_before = machine()

peers = []
spawned = []  # when each peer started: its figures' uptime_s, put on the stream's clock
readers = []
for i in range(args.peers):
    err = open(os.path.join(work, f"peer{i}.err"), "w")
    out = subprocess.PIPE if args.markers else subprocess.DEVNULL
    p = spawn([bin_("bl-peer"), link, "--listen", "127.0.0.1:0", "--stats-json", *every,
               "--rng-seed", str(i + 1)], stdout=out, stderr=err)
    peers.append((p, err))
    spawned.append(time.time())
    if args.markers:
        marks.append([])
        readers.append(threading.Thread(target=read_markers, args=(p.stdout, marks[-1]), daemon=True))
        readers[-1].start()
    time.sleep(0.02)
time.sleep(2.0)  # handshakes, subscriptions

t0 = time.time()
encoder_out = chunker.stdin
if args.markers:
    stamp_log = os.path.join(work, "stamped.log")
    stamper = spawn([os.path.join(root, "scripts", "ts-mark"), "stamp", stamp_log],
                    stdin=subprocess.PIPE, stdout=chunker.stdin)
    encoder_out = stamper.stdin
ffmpeg = spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", src, "-flush_packets", "1",
                "-c", "copy", "-f", "mpegts", "-"], stdout=encoder_out)
chunker.stdin.close()
if args.markers:
    stamper.stdin.close()

def stop_for(pid, at, ms):
    import signal
    time.sleep(max(0.0, t0 + at - time.time()))
    os.kill(pid, signal.SIGSTOP)
    time.sleep(ms / 1000)
    os.kill(pid, signal.SIGCONT)
for i, at, ms in stalls:
    threading.Thread(target=stop_for, args=(peers[i][0].pid, at, ms), daemon=True).start()

usage = {}
def reap(p, name, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            usage[name] = (ru.ru_utime + ru.ru_stime, ru.ru_maxrss)
            return
        time.sleep(0.05)
    p.kill()
    raise SystemExit(f"{name} did not finish")

time.sleep(args.seconds / 2)
late = []
for i in range(args.late):
    err = open(os.path.join(work, f"late{i}.err"), "w")
    late.append(spawn([bin_("bl-peer"), link, "--listen", "127.0.0.1:0", "--stats-json",
                       "--rng-seed", str(1000 + i)], stdout=subprocess.DEVNULL, stderr=err))
reap(ffmpeg, "ffmpeg", args.seconds + 60)
if args.markers:
    reap(stamper, "ts-mark", 30)
reap(chunker, "bl-chunk", 30)
reap(seed, "bl-seed", 60)
wall = time.time() - t0
for i, (p, _) in enumerate(peers):
    reap(p, f"peer{i}", 60)
for i, p in enumerate(late):
    reap(p, f"late{i}", 60)

machine_after = machine()

def series(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]

def last_json(path):
    return series(path)[-1]

def first_s(i, count):
    """With --stats-every: the stream time (s) of the first of peer i's figures where `count`
    is above 0, to tell a duplicate as the trees form from one after a stall."""
    for x in series(os.path.join(work, f"peer{i}.err")):
        if count(x) > 0:
            return round(spawned[i] + x["uptime_s"] - t0, 1)
    return None

s = last_json(os.path.join(work, "seed.err"))
ps = [last_json(os.path.join(work, f"peer{i}.err")) for i in range(args.peers)]
stream = s["stream_bytes"]
total_sent = s["bytes_sent"] + sum(p["bytes_sent"] for p in ps)
media_s = args.seconds
peer_cpu = [usage[f"peer{i}"][0] for i in range(args.peers)]
peer_rss = [usage[f"peer{i}"][1] for i in range(args.peers)]
p99s = [p["latency_ms"]["p99"] for p in ps]
# Every chunk of every peer: merge the histograms ([upper bound ms, count]).
pooled = {}
for p in ps:
    for ms, n in p.get("latency_histogram_ms", []):
        pooled[ms] = pooled.get(ms, 0) + n
pooled = sorted(pooled.items())
total = sum(n for _, n in pooled)
def quantile(q):
    rank, seen = max(1, -(-int(q * total * 1000) // 1000)), 0
    for ms, n in pooled:
        seen += n
        if seen >= rank:
            return ms
    return 0.0
def requests(p):
    return p["sent_by_kind"].get("request", {}).get("datagrams", 0)
lates = [last_json(os.path.join(work, f"late{i}.err")) for i in range(args.late)]
startups = sorted(p["startup_ms"] for p in lates if p.get("startup_ms") is not None)
n_hops = max(1, args.peers).bit_length()
chunk_ms = 1128 * 8 / args.rate  # one chunk's time at the stream rate
result = {
    "peers": args.peers, "rate_kbps": args.rate, "seconds": args.seconds, "source": args.source,
    "stream_bytes": stream, "wall_s": round(wall, 1),
    "latency_ms": {"p50": quantile(0.5), "p99": quantile(0.99),
                   "max": max(p["latency_ms"]["max"] for p in ps),
                   "p99_worst_peer": max(p99s), "chunks": total},
    # 1 + ceil(log2 N) chunk times (loopback hop RTTs are ~0).
    "delay_bound_ms": round((1 + n_hops) * chunk_ms, 1),
    "startup_ms": {"late_joiners": len(startups),
                   "median": startups[len(startups) // 2] if startups else None,
                   "max": startups[-1] if startups else None},
    "continuity": round(statistics.mean(p["stream_bytes"] / stream for p in ps), 5),
    "continuity_worst_peer": round(min(p["stream_bytes"] / stream for p in ps), 5),
    "chunks_skipped_total": sum(p["chunks_skipped"] for p in ps),
    "source_amplification": round(s["bytes_sent"] / stream, 3),
    "overhead": round(total_sent / (args.peers * stream) - 1, 4),
    "peer_upload_ratio": {"min": round(min(p["bytes_sent"] for p in ps) / stream, 2),
                          "median": round(statistics.median(p["bytes_sent"] for p in ps) / stream, 2),
                          "max": round(max(p["bytes_sent"] for p in ps) / stream, 2)},
    "cpu_s_per_peer_per_stream_s": {"median": round(statistics.median(peer_cpu) / media_s, 4),
                                     "max": round(max(peer_cpu) / media_s, 4)},
    "peak_rss_kib_per_peer": {"median": int(statistics.median(peer_rss)), "max": max(peer_rss)},
    "seed_cpu_s_per_stream_s": round(usage["bl-seed"][0] / media_s, 4),
    "seed_ingest_latency_ms": s["ingest_latency_ms"],
    "repairs_requested_total": sum(requests(p) for p in ps),
    "chunks_duplicate_total": sum(p["chunks_duplicate"] for p in ps),
    "exit_codes_nonzero": sum(1 for p, _ in peers if p.returncode != 0)
                          + sum(1 for p in late if p.returncode != 0),
    # Scheduler stalls: a node's loop ran 50 ms or more after it was due (a neighbour asks
    # another for a chunk after 50 ms), which looks to its children like a slow path.
    "stalls": {"seed": s["stalls"], "seed_wake_lag_max_ms": s["wake_lag_max_ms"],
               "peers_stalled": sum(1 for p in ps if p["stalls"] > 0),
               "peer_stalls_total": sum(p["stalls"] for p in ps),
               "peers_wake_lag_max_ms": max(p["wake_lag_max_ms"] for p in ps)},
    "stopped": [{"peer": i, "at_s": at, "ms": ms} for i, at, ms in stalls],
    # Over the swarm's life: CPU the hypervisor took (steal, both CPUs), the machine's busy
    # share, and datagrams the kernel dropped (receive or send buffers full, bad checksums).
    "machine": {"steal_s": round((machine_after[0][7] - machine_before[0][7]) / os.sysconf("SC_CLK_TCK"), 2),
                "busy": round(1 - sum(a - b for a, b in zip(machine_after[0][3:5], machine_before[0][3:5]))
                              / max(1, sum(machine_after[0]) - sum(machine_before[0])), 3),
                "udp_dropped": sum(machine_after[1][k] - machine_before[1][k]
                                   for k in ("RcvbufErrors", "SndbufErrors", "InErrors"))},
    # Each peer that stalled, asked for a repair or took a duplicate, and any peer stopped
    # (--stall), to tell which way round.
    "peers_of_note": [{"peer": i, "stalls": p["stalls"], "wake_lag_max_ms": p["wake_lag_max_ms"],
                       "requests": requests(p),
                       "duplicates": p["chunks_duplicate"], "latency_max_ms": p["latency_ms"]["max"],
                       "repairs_served": p["repairs_served"],
                       "upload_ratio": round(p["chunk_bytes_sent"] / stream, 2),
                       **({"first_duplicate_s": first_s(i, lambda x: x["chunks_duplicate"]),
                           "first_request_s": first_s(i, requests),
                           "first_stall_s": first_s(i, lambda x: x["stalls"])}
                          if args.stats_every else {})}
                      for i, p in enumerate(ps)
                      if p["stalls"] or p["chunks_duplicate"] or requests(p)
                      or any(i == j for j, _, _ in stalls)],
}

if args.markers:
    for t in readers:
        t.join(timeout=10)
    with open(stamp_log) as f:
        stamped = sum(1 for _ in f)
    pooled_marks = sorted(ms for found in marks for _, ms in found)
    def mark_q(q):
        return round(pooled_marks[min(len(pooled_marks) - 1, int(q * len(pooled_marks)))], 2) if pooled_marks else None
    result["marker_latency_ms"] = {
        "stamped": stamped, "received_per_peer_min": min(len(f) for f in marks),
        "p50": mark_q(0.5), "p95": mark_q(0.95), "p99": mark_q(0.99),
        "max": round(pooled_marks[-1], 2) if pooled_marks else None}

def svg_cdf(points, title):
    """Latency CDF on a log time axis, as a small standalone SVG."""
    w, h, l, b = 640, 360, 60, 40
    lo, hi = 1.0, max(10.0, max((ms for ms, _ in points), default=10.0))
    import math
    x = lambda ms: l + (w - l - 20) * (math.log10(max(ms, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    y = lambda f: h - b - (h - b - 30) * f
    seen, path = 0, []
    for ms, n in points:
        seen += n
        path.append(f"{x(ms):.1f},{y(seen / max(total, 1)):.1f}")
    ticks = [t for t in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000) if t <= hi]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{l}" y="18" font-size="13">{title}</text>',
           f'<line x1="{l}" y1="{h-b}" x2="{w-20}" y2="{h-b}" stroke="black"/>',
           f'<line x1="{l}" y1="{h-b}" x2="{l}" y2="30" stroke="black"/>']
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{h-b}" x2="{x(t):.1f}" y2="30" stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{h-b+15}" text-anchor="middle">{t}</text>')
    for f in (0, 0.5, 0.9, 0.99, 1.0):
        out.append(f'<text x="{l-6}" y="{y(f)+4:.1f}" text-anchor="end">{f}</text>')
        out.append(f'<line x1="{l}" y1="{y(f):.1f}" x2="{w-20}" y2="{y(f):.1f}" stroke="#eee"/>')
    out.append(f'<text x="{(l+w)/2}" y="{h-6}" text-anchor="middle">latency, ms (capture to stdout, log scale)</text>')
    out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{" ".join(path)}"/>')
    out.append("</svg>")
    return "\n".join(out)
print(json.dumps(result, indent=2))
with open(os.path.join(out_dir, f"swarm-{args.peers}.json"), "w") as f:
    json.dump(result, f, indent=2)
with open(os.path.join(out_dir, f"swarm-{args.peers}-latency.svg"), "w") as f:
    f.write(svg_cdf(pooled, f"bl swarm, {args.peers} peers at {args.rate} kbit/s: latency CDF over {total} chunks"))
if not args.keep:
    subprocess.run(["rm", "-rf", work])
