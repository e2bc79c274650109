#!/usr/bin/env python3
"""Prints the current definition of named functions and views of sql/*.sql as CREATE OR REPLACE
statements, for the hand-written upgrade script (tests/upgrade.sh compares the upgraded
catalog with a fresh install, so the text must be the same).

    python3 scripts/upgrade_copy.py invoices.create_api_key invoices.api_keys ... >> sql/upgrades/<script>.sql
    python3 scripts/upgrade_copy.py --into sql/upgrades/<script>.sql --since '<marker line>' <names>...

With --into, the definitions are appended to the script and any earlier CREATE OR REPLACE of the
same function or view after the marker line is dropped, so the script keeps one copy of each.
The new copy lands at the end: use --into only for objects that already exist by then (a
function the section creates and grants must keep its place before its GRANT/REVOKE).

Functions are matched by schema-qualified name (every overload), views likewise; the statement
runs to its `$$;` (functions) or its first line ending in `;` (views)."""
import glob
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
args = sys.argv[1:]
into = since = None
if args[:1] == ["--into"]:
    into, args = args[1], args[2:]
    if args[:1] == ["--since"]:
        since, args = args[1], args[2:]


def statements(text):
    """(kind name, start, end) of every CREATE OR REPLACE function or view in text."""
    for m in re.finditer(r"^create or replace (function|view) ([a-z_.]+)", text, re.M):
        if m.group(1) == "function":
            head = re.compile(r"^(as \$\$|begin atomic)", re.M).search(text, m.end())
            if head.group(1) == "begin atomic":
                end = text.index("\nend;", head.end()) + len("\nend;")
            else:
                end = text.index("$$;", head.end()) + 3
        else:
            end = re.compile(r";[ \t]*$", re.M).search(text, m.end()).end()
        yield m.group(1) + " " + m.group(2), m.start(), end
text = "\n".join(open(f).read() for f in sorted(glob.glob(os.path.join(root, "sql", "[0-9]*.sql"))))
out = []
for name in args:
    found = False
    for m in re.finditer(r"^create (function|view) " + re.escape(name) + r"\b", text, re.M):
        found = True
        kind = m.group(1)
        if kind == "function":
            head = re.compile(r"^(as \$\$|begin atomic)", re.M).search(text, m.end())
            if head.group(1) == "begin atomic":
                end = text.index("\nend;", head.end()) + len("\nend;")
            else:
                end = text.index("$$;", head.end()) + 3
        else:
            end = re.compile(r";[ \t]*$", re.M).search(text, m.end()).end()
        out.append("create or replace " + text[m.start() + len("create "):end])
    if not found:
        sys.exit(f"no function or view named {name}")
copies = "\n\n".join(out)
if into is None:
    print(copies)
    sys.exit(0)
script = open(into).read().rstrip("\n") + "\n\n" + copies + "\n"
start = script.index(since) if since else 0
head, part = script[:start], script[start:]
found = list(statements(part))
last = {name: (a, b) for name, a, b in found}
for name, a, b in sorted((x for x in found if last[x[0]] != x[1:]), key=lambda x: -x[1]):
    while b < len(part) and part[b] == "\n":
        b += 1
    part = part[:a] + part[b:]
open(into, "w").write(head + part)
