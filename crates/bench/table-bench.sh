#!/usr/bin/env bash
# Needs psql and bc. A table with a primary key and 5 M rows (20 INSERT …
# SELECT statements of 250k rows): the time to insert them, statements that
# scan the table (UPDATE, DELETE on a non-key column), statements on a few
# keys (duplicate key, UPDATE and DELETE by key), the server's memory, and a
# restart (to listening, and its memory after one INSERT), then reads of the
# table by the restarted server: a SELECT by key, a SELECT of every row, a view of every row, a view
# on that view, and a SELECT of the view (peak memory after each).
set -u
B=${TIDEMARK_BIN:-./target/release/tidemark}
D=/tmp/tidemark-table-bench
P=45811
BATCHES=${BATCHES:-20}
rm -rf $D
q(){ psql -h 127.0.0.1 -p $P -U tidemark -d dev -Atc "$1"; }
wait_listening(){ until grep -q "listening on" "$1"; do sleep 0.05; done; }
timed(){ local s e; s=$(date +%s.%N); q "$2"; e=$(date +%s.%N); echo "$1: $(echo "$e - $s" | bc) s"; }
memory(){ grep -E "VmHWM|VmRSS" /proc/$1/status | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/table-bench1.log 2>&1 &
PID=$!
wait_listening /tmp/table-bench1.log
q "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR, price BIGINT)"
S=$(date +%s.%N)
for b in $(seq 0 $((BATCHES - 1))); do
  lo=$((b * 250000 + 1)); hi=$(((b + 1) * 250000))
  q "INSERT INTO items SELECT value, 'item number ' || value || ' with a longer description to make rows wider', value % 1000 FROM generate_series($lo, $hi)" > /dev/null || exit 1
done
q "FLUSH" > /dev/null
E=$(date +%s.%N)
echo "insert $((BATCHES * 250000)) rows: $(echo "$E - $S" | bc) s"
echo "after the inserts: $(memory $PID)"
timed "update (scan)" "UPDATE items SET price = price + 1 WHERE id % 100000 = 7"
timed "duplicate key" "INSERT INTO items VALUES (1, 'dup', 1)" 2>&1
timed "update by key" "UPDATE items SET price = 0 WHERE id = 4242"
timed "delete by keys" "DELETE FROM items WHERE id IN (1, 2, 3)"
timed "delete (scan)" "DELETE FROM items WHERE price = 5"
q "FLUSH" > /dev/null
echo "peak: $(memory $PID)"
echo "state on disk: $(du -sh $D/state | cut -f1)"
kill -TERM $PID; wait $PID

S=$(date +%s.%N)
$B --data-dir $D --listen 127.0.0.1:$P --parallelism 1 > /tmp/table-bench2.log 2>&1 &
PID=$!
wait_listening /tmp/table-bench2.log
E=$(date +%s.%N)
echo "restart to listening: $(echo "$E - $S" | bc) s"
q "INSERT INTO items VALUES ($((BATCHES * 250000 + 1)), 'x', 1)"
echo "restarted, after one insert: $(memory $PID)"
timed "select by key" "SELECT * FROM items WHERE id IN (4242, 4243)"
timed "select count(*) of the table" "SELECT count(*), sum(price) FROM items"
echo "after the select: $(memory $PID)"
timed "view of every row" "CREATE MATERIALIZED VIEW copy AS SELECT id, name FROM items"
q "FLUSH" > /dev/null
echo "after the view: $(memory $PID)"
q "SELECT part, bytes FROM tidemark_catalog.memory" | tr '\n' ' '; echo
timed "view on that view" "CREATE MATERIALIZED VIEW copy_count AS SELECT count(*) FROM copy"
q "FLUSH" > /dev/null
echo "after the view on the view: $(memory $PID)"
timed "select count(*) of the view" "SELECT count(*) FROM copy"
echo "after the select of the view: $(memory $PID)"
kill -TERM $PID; wait $PID
rm -rf $D
