#!/usr/bin/env bash
# Needs psql and bc; the bids file comes from `cargo run --release -p tidemark-bench`.
# Recovery time of a server whose views hold ~1 GB of state: build the views,
# kill -9, restart, time until the server listens (it waits for restored views
# to catch up before listening).
set -u
B=${TIDEMARK_BIN:-./target/release/tidemark}
D=/tmp/tidemark-recovery
P=45801
rm -rf $D
q(){ psql -h 127.0.0.1 -p $P -U tidemark -d dev -Atc "$1"; }
$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/rec1.log 2>&1 &
sleep 2
q "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'file', path = '${BIDS:-/tmp/tidemark-bench/bids-10000000.csv}', format = 'csv')"
start=$(date +%s.%N)
q "CREATE MATERIALIZED VIEW all_bids AS SELECT * FROM bids"
q "CREATE MATERIALIZED VIEW hop AS SELECT auction, window_start, window_end, count(*) AS n, max(price) AS top FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE"
q "FLUSH"
end=$(date +%s.%N)
echo "first build: $(echo "$end - $start" | bc) s"
q "SELECT (SELECT count(*) FROM all_bids) AS all_rows, (SELECT count(*) FROM hop) AS hop_rows"
du -sh $D/state
pkill -9 -f "data-dir $D"
sleep 1
start=$(date +%s.%N)
$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/rec2.log 2>&1 &
until grep -q "listening on" /tmp/rec2.log; do sleep 0.1; done
end=$(date +%s.%N)
echo "recovery (start to listening, views caught up): $(echo "$end - $start" | bc) s"
q "SELECT (SELECT count(*) FROM all_bids) AS all_rows, (SELECT count(*) FROM hop) AS hop_rows"
grep "restored; views" /tmp/rec2.log
du -sh $D/state
pkill -TERM -f "data-dir $D"
