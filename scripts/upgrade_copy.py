#!/usr/bin/env python3
"""Prints the current definition of named functions and views of sql/*.sql as CREATE OR REPLACE
statements, for the hand-written upgrade script (tests/upgrade.sh compares the upgraded
catalog with a fresh install, so the text must be the same).

    python3 scripts/upgrade_copy.py invoices.create_api_key invoices.api_keys ... >> sql/upgrades/<script>.sql

Functions are matched by schema-qualified name (every overload), views likewise; the statement
runs to its `$$;` (functions) or its first line ending in `;` (views)."""
import glob
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
text = "\n".join(open(f).read() for f in sorted(glob.glob(os.path.join(root, "sql", "[0-9]*.sql"))))
out = []
for name in sys.argv[1:]:
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
print("\n\n".join(out))
