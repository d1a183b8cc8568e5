"""`make demo` (townsense demo): the demo town end to end through an in-process broker, the
collector, the fleet status, the alerts and the route."""

import io
import sqlite3

from host import demo


def test_demo_town_end_to_end(tmp_path):
    out = io.StringIO()
    assert demo.run(tmp_path, hours=8, out=out) == 0
    text = out.getvalue()
    assert "17 nodes, 0 overdue" in text, text
    db = sqlite3.connect(tmp_path / "town.db")
    nodes = {n for (n,) in db.execute("SELECT DISTINCT node FROM readings")}
    assert len(nodes) == 17, nodes
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    # every reading once: (node, seq) unique and without gaps per node
    for node, lo, hi, n in db.execute("SELECT node, MIN(seq), MAX(seq), COUNT(*) FROM "
                                       "(SELECT node, seq FROM readings UNION ALL SELECT node, seq FROM events) "
                                       "GROUP BY node"):
        assert n == hi - lo + 1, node
    assert "$ townsense route" in text
