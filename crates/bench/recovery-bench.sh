#!/usr/bin/env bash
# Needs psql and bc; the bids file comes from `cargo run --release -p tidemark-bench`.
# Recovery after kill -9 in the middle of the input: views over 10 M bids
# (every row, a HOP aggregate, a GROUP BY per bidder, a GROUP BY per auction and
# bidder with nearly one group per bid) are killed once half the
# file is read; the restart is timed to listening (catalog, state and source
# offsets restored) and to the end of the input, and the results are checked
# against the full input.
set -u
B=${TIDEMARK_BIN:-./target/release/tidemark}
D=/tmp/tidemark-recovery
P=45801
BIDS=${BIDS:-/tmp/tidemark-bench/bids-10000000.csv}
# Rows every view has read when the server is killed.
KILL_AT=${KILL_AT:-5000000}
rm -rf $D
q(){ psql -h 127.0.0.1 -p $P -U tidemark -d dev -Atc "$1"; }
wait_listening(){ until grep -q "listening on" "$1"; do sleep 0.05; done; }
$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/rec1.log 2>&1 &
wait_listening /tmp/rec1.log
q "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'file', path = '$BIDS', format = 'csv')"
q "CREATE MATERIALIZED VIEW all_bids AS SELECT * FROM bids"
q "CREATE MATERIALIZED VIEW hop AS SELECT auction, window_start, window_end, count(*) AS n, max(price) AS top FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE"
q "CREATE MATERIALIZED VIEW per_bidder AS SELECT bidder, count(*) AS n, sum(price) AS total, max(price) AS top FROM bids GROUP BY bidder"
q "CREATE MATERIALIZED VIEW per_pair AS SELECT auction, bidder, count(*) AS n, max(price) AS top FROM bids GROUP BY auction, bidder"
until [ "$(q "SELECT min(rows_in) FROM tidemark_catalog.streaming_jobs")" -ge "$KILL_AT" ]; do sleep 0.05; done
q "SELECT name, rows_in FROM tidemark_catalog.streaming_jobs ORDER BY name"
echo "peak RSS of the first server: $(grep VmHWM /proc/$(pgrep -f "data-dir $D")/status | tr -s ' \t' ' ')"
pkill -9 -f "data-dir $D"
sleep 1
du -sh $D/state
start=$(date +%s.%N)
$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/rec2.log 2>&1 &
wait_listening /tmp/rec2.log
listening=$(date +%s.%N)
echo "restart to listening: $(echo "$listening - $start" | bc) s"
q "SELECT name, rows_in FROM tidemark_catalog.streaming_jobs ORDER BY name"
q "FLUSH"
end=$(date +%s.%N)
echo "restart to the end of the input: $(echo "$end - $start" | bc) s"
# Before the SELECTs below, which decode whole views in memory.
echo "peak RSS of the restarted server to the end of the input: $(grep VmHWM /proc/$(pgrep -f "data-dir $D")/status | tr -s ' \t' ' ')"
q "SELECT (SELECT count(*) FROM all_bids) AS all_rows, (SELECT count(*) FROM hop) AS hop_rows, (SELECT sum(n) FROM per_bidder) AS bids_counted, (SELECT count(*) FROM per_bidder) AS bidders, (SELECT sum(n) FROM per_pair) AS pairs_counted, (SELECT count(*) FROM per_pair) AS pairs"
grep -E "resumed|recomputing|restored" /tmp/rec2.log | sed 's/^.*INFO //'
du -sh $D/state
pkill -TERM -f "data-dir $D"
