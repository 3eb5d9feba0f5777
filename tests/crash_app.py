#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Two applications that fsync every change and can check themselves, for
the crash consistency test of snapshot images.

usage: crash_app.py run DIR LOGDIR
       crash_app.py check DIR LOGDIR_BEFORE LOGDIR_AFTER

run: in DIR, a SQLite database (rollback journal, synchronous=FULL) gets
one transaction after another, each inserting row n with a payload and its
checksum and setting the counter to n; a journal file gets fixed-size
records, each with its number and checksum, fsync'd one by one. After each
commit or fsync, the number made durable is written to LOGDIR/db or
LOGDIR/journal (outside the file system under test). Runs until killed.

check: DIR holds the applications' files as an image kept them (after the
file system's journal replay, and SQLite's, by an earlier read-write open).
The database must pass integrity_check, rows 1..N must be there with good
checksums and the counter must be N; the journal's records must be good up
to M, followed by nothing or one torn record. N and M must lie between what
was durable before the take (LOGDIR_BEFORE) and after it (LOGDIR_AFTER).
Prints N and M; exits 1 if a check failed.
"""
import hashlib
import os
import sqlite3
import sys

RECORD = 512


def payload(n):
    return hashlib.sha256(b"payload %d" % n).digest() * 8


def checksum(n, data):
    return hashlib.sha256(b"%d:" % n + data).hexdigest()


def record(n):
    """Journal record n: RECORD bytes, its number, filler, its checksum."""
    body = (b"%12d " % n + payload(n) * 2)[:RECORD - 66]
    return body + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def publish(fd, n):
    os.pwrite(fd, b"%12d\n" % n, 0)


def run(directory, logdir):
    db = sqlite3.connect(os.path.join(directory, "app.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY, data BLOB, sum TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER)")
    db.execute("INSERT INTO counter SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter)")
    journal = os.open(os.path.join(directory, "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    db_log = os.open(os.path.join(logdir, "db"), os.O_WRONLY | os.O_CREAT, 0o644)
    journal_log = os.open(os.path.join(logdir, "journal"), os.O_WRONLY | os.O_CREAT, 0o644)
    n = 0
    while True:
        n += 1
        data = payload(n)
        db.execute("BEGIN")
        db.execute("INSERT INTO rows VALUES (?, ?, ?)", (n, data, checksum(n, data)))
        db.execute("UPDATE counter SET n = ?", (n,))
        db.execute("COMMIT")
        publish(db_log, n)
        os.write(journal, record(n))
        os.fsync(journal)
        publish(journal_log, n)


def durable(logdir, name):
    with open(os.path.join(logdir, name)) as f:
        return int(f.read().strip() or 0)


def check(directory, before, after):
    bad = []
    uri = "file:" + os.path.join(directory, "app.db") + "?mode=ro&immutable=1"
    db = sqlite3.connect(uri, uri=True)
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        bad.append(f"database integrity_check: {integrity}")
    counter = db.execute("SELECT n FROM counter").fetchone()[0]
    expect = 1
    for n, data, total in db.execute("SELECT n, data, sum FROM rows ORDER BY n"):
        if n != expect:
            bad.append(f"database: row {expect} missing (next is {n})")
            break
        if data != payload(n) or total != checksum(n, data):
            bad.append(f"database: row {n} is corrupt")
            break
        expect += 1
    rows = expect - 1
    if counter != rows:
        bad.append(f"database: counter {counter}, rows 1..{rows}")
    lo, hi = durable(before, "db"), durable(after, "db")
    if not lo <= rows <= hi:
        bad.append(f"database: {rows} transactions, durable before the take {lo}, after {hi}")

    with open(os.path.join(directory, "journal"), "rb") as f:
        content = f.read()
    good = 0
    while (good + 1) * RECORD <= len(content):
        if content[good * RECORD:(good + 1) * RECORD] != record(good + 1):
            break
        good += 1
    tail = len(content) - good * RECORD
    if tail >= RECORD:
        bad.append(f"journal: record {good + 1} is corrupt and {tail} bytes follow")
    lo, hi = durable(before, "journal"), durable(after, "journal")
    if not lo <= good <= hi:
        bad.append(f"journal: {good} records, durable before the take {lo}, after {hi}")
    print(f"database: {rows} transactions; journal: {good} records (+{tail} bytes torn)")
    for b in bad:
        print("FAIL: " + b)
    return 1 if bad else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
