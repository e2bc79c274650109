#!/usr/bin/env python3
"""Citus' rules for statements, checked on the SQL the worker runs (issue 10), without Citus.

Input (stdin, JSON): {"plan": {table: [kind, distribution column]}, "functions": [{name, lang,
nargs, volatile, src}], "entry": [function names the worker calls], "triggers": [trigger
functions of Citus tables]}. The functions checked are the entry points, the triggers their
writes fire, and every function of the extension they call, transitively.

Rules (each a refusal documented by Citus; every rewrite they force is also plain PostgreSQL):
  sql-functions  a LANGUAGE sql function with parameters over Citus tables: "parameterized
                 queries for SQL functions referencing distributed tables are not supported";
  row-locks      SELECT … FOR UPDATE/SHARE on a distributed table runs on one shard only: it
                 filters the distribution column, and it is not inside a subquery or CTE;
  update-times   an UPDATE of a Citus table has no mutable function (now(), current_date, a cast
                 to a time type) inside CASE or COALESCE, nor in arithmetic in its SET list
                 ("non-IMMUTABLE functions are not allowed in CASE or COALESCE statements",
                 "STABLE functions used in UPDATE queries cannot be called with column references");
  multi-shard    an UPDATE/DELETE of a distributed table that filters no distribution column has
                 no FROM, no subquery and is not a CTE (multi-shard modifications take neither);
  writes-inside  no volatile function of the extension in a SELECT/PERFORM over a distributed
                 table that filters no distribution column (it would run on the worker nodes).

The checks read statements as text (comments and string literals removed, split at top-level
semicolons): they are a lint, tuned to this code base, with a self-check in catalog.sh.
Output: one line per rule, "ok|rule|summary" or "bad|rule|finding" per finding.
"""
import json
import re
import sys

TIME = r"(?:\bnow\(\)|\bcurrent_date\b|\bcurrent_timestamp\b|\bclock_timestamp\(\)|\blocaltimestamp\b|" \
       r"\bstatement_timestamp\(\)|\btransaction_timestamp\(\)|::\s*timestamptz\b|::\s*timestamp with time zone\b)"
LOCK = re.compile(r"\bfor\s+(?:no\s+key\s+update|update|key\s+share|share)\b")


def clean(src):
    """Lower case, without comments and string contents."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("--", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'":
            j = i + 1
            while j < n:
                if src[j] == "'" and j + 1 < n and src[j + 1] == "'":
                    j += 2
                elif src[j] == "'":
                    break
                else:
                    j += 1
            out.append("''")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out).lower()


def statements(src):
    """Top-level statements: split at semicolons outside parentheses, and after the query of a
    PL/pgSQL FOR loop (at its LOOP keyword)."""
    depth, start, parts = 0, 0, []
    for i, c in enumerate(src):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and (c == ";" or (re.match(r"\bloop\b", src[i:i + 5]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")))):
            parts.append(src[start:i])
            start = i + (1 if c == ";" else 4)
    parts.append(src[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def depth_at(s, pos):
    return s[:pos].count("(") - s[:pos].count(")")


def close_paren(s, open_pos):
    depth = 0
    for i in range(open_pos, len(s)):
        if s[i] == "(":
            depth += 1
        elif s[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(s)


def spans(s):
    """The text of every COALESCE(…) and CASE … END."""
    out = []
    for m in re.finditer(r"\bcoalesce\s*\(", s):
        out.append(s[m.end() - 1:close_paren(s, m.end() - 1) + 1])
    for m in re.finditer(r"\bcase\b", s):
        depth, j = 0, m.start()
        for t in re.finditer(r"\bcase\b|\bend\b", s[m.start():]):
            depth += 1 if t.group() == "case" else -1
            if depth == 0:
                j = m.start() + t.end()
                break
        out.append(s[m.start():j])
    return out


class Checker:
    def __init__(self, data):
        self.plan = {t.split(".")[-1]: (k, c) for t, (k, c) in data["plan"].items()}
        self.funcs = {}
        for f in data["functions"]:
            self.funcs.setdefault(f["name"], []).append(f)
        self.findings = {r: [] for r in ("sql-functions", "row-locks", "update-times", "multi-shard", "writes-inside")}
        self.volatile = {n for n, fs in self.funcs.items() if any(f["volatile"] for f in fs)}
        self.roots = len(data["entry"]) + len(data["triggers"])
        self.checked = self.reachable(data["entry"] + data["triggers"])
        self.count = 0

    def reachable(self, roots):
        seen, todo = set(), [r for r in roots if r in self.funcs]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for f in self.funcs[name]:
                for m in re.finditer(r"\b(invoices_internal|invoices)\.(\w+)\s*\(", clean(f["src"])):
                    callee = m.group(1) + "." + m.group(2)
                    if callee in self.funcs and callee not in seen:
                        todo.append(callee)
        return sorted(seen)

    def tables(self, s):
        """(name, alias) of the Citus tables a statement names."""
        out = []
        # (a cast to a table's row type, ::invoices_internal.invoices, names no table)
        for m in re.finditer(r"(?<!::)\binvoices_internal\.(\w+)\b(?!\s*\()(?:\s+(?:as\s+)?(?!where\b|set\b|on\b|join\b|"
                             r"using\b|left\b|cross\b|group\b|order\b|limit\b|for\b|returning\b|union\b|and\b)(\w+))?", s):
            name = m.group(1)
            if name in self.plan and self.plan[name][0] != "local":
                out.append((name, m.group(2) or name))
        return out

    def routed(self, s, tabs):
        """Whether some distributed table of the statement is filtered by its distribution column."""
        aliases = {a for _, a in tabs}
        for name, alias in tabs:
            kind, col = self.plan[name]
            if kind not in ("tenant", "routing"):
                continue
            qual = r"(?:\b%s\.)?" % re.escape(alias)
            for m in re.finditer(r"(?<![\w.])%s%s\s*=\s*([\w.]+)" % (qual, col), s):
                rhs = m.group(1)
                if not (("." in rhs) and rhs.split(".")[0] in aliases and rhs.split(".")[1] == col):
                    return True
            for m in re.finditer(r"([\w.]+)\s*=\s*%s%s\b" % (qual, col), s):
                lhs = m.group(1)
                if not (("." in lhs) and lhs.split(".")[0] in aliases):
                    return True
        return False

    def distributed(self, tabs):
        return [t for t in tabs if self.plan[t[0]][0] in ("tenant", "routing")]

    def check_function(self, f):
        src = clean(f["src"])
        name = f["name"]
        if f["lang"] == "sql" and f["nargs"] > 0 and self.tables(src):
            self.findings["sql-functions"].append(
                "%s: LANGUAGE sql with parameters over %s: make it plpgsql"
                % (name, ", ".join(sorted({t for t, _ in self.tables(src)}))))
        for s in statements(src):
            tabs = self.tables(s)
            if not tabs:
                continue
            self.count += 1
            dist = self.distributed(tabs)
            routed = self.routed(s, tabs)
            short = s if len(s) < 140 else s[:137] + "..."
            for m in LOCK.finditer(s):
                if depth_at(s, m.start()) > 0:
                    self.findings["row-locks"].append("%s: a row lock inside a subquery or CTE: %s" % (name, short))
                elif dist and not routed:
                    self.findings["row-locks"].append(
                        "%s: a row lock on %s without a filter on the distribution column: %s"
                        % (name, ", ".join(sorted({t for t, _ in dist})), short))
            for m in re.finditer(r"\b(update|delete\s+from)\s+invoices_internal\.(\w+)", s):
                table = m.group(2)
                if table not in self.plan or self.plan[table][0] == "local":
                    continue
                body = s[m.start():]
                if depth_at(s, m.start()) > 0:
                    close = close_paren(s, s.rfind("(", 0, m.start()))
                    body = s[m.start():close]
                if m.group(1) == "update":
                    setm = re.search(r"\bset\b", body)
                    if setm:
                        end = re.search(r"\b(where|from|returning)\b", body[setm.end():])
                        setl = body[setm.end():setm.end() + end.start()] if end else body[setm.end():]
                        for sp in spans(setl):
                            if re.search(TIME, sp):
                                self.findings["update-times"].append(
                                    "%s: a mutable function inside CASE/COALESCE in UPDATE %s: %s" % (name, table, sp[:100]))
                        if re.search(TIME + r"\s*[-+*/]|[-+*/]\s*" + TIME, setl):
                            self.findings["update-times"].append(
                                "%s: a mutable function in arithmetic in UPDATE %s: %s" % (name, table, setl.strip()[:100]))
                own = self.tables(body)
                if self.plan[table][0] in ("tenant", "routing") and not self.routed(body, own):
                    why = []
                    if depth_at(s, m.start()) > 0:
                        why.append("in a CTE")
                    if re.search(r"\bfrom\b", body[len(m.group(0)):]) if m.group(1) == "update" else \
                            re.search(r"\busing\b", body):
                        why.append("with FROM/USING")
                    if re.search(r"\(\s*select\b", body):
                        why.append("with a subquery")
                    if why:
                        self.findings["multi-shard"].append(
                            "%s: multi-shard %s of %s %s: %s" % (name, m.group(1).split()[0].upper(), table,
                                                                  " and ".join(why), short))
            if dist and not routed and not re.search(r"\b(update|delete|insert)\b(?!\s*skip|\s+set)", s):
                for c in re.finditer(r"\b(invoices_internal|invoices)\.(\w+)\s*\(", s):
                    callee = c.group(1) + "." + c.group(2)
                    if callee in self.volatile:
                        self.findings["writes-inside"].append(
                            "%s: %s (volatile) in a multi-shard read: %s" % (name, callee, short))

    def run(self):
        for name in self.checked:
            for f in self.funcs[name]:
                self.check_function(f)
        titles = {
            "sql-functions": "functions the worker reaches that read Citus tables are not parameterized LANGUAGE sql",
            "row-locks": "row locks (FOR UPDATE/SHARE) filter the distribution column and are not in a subquery or CTE",
            "update-times": "UPDATEs of Citus tables keep now() and casts to time types out of CASE, COALESCE and SET arithmetic",
            "multi-shard": "UPDATE/DELETE naming no merchant have no FROM, subquery or CTE",
            "writes-inside": "no volatile function of the extension runs inside a multi-shard read",
        }
        for rule, title in titles.items():
            found = self.findings[rule]
            if not found:
                print("ok|%s" % title)
            for x in sorted(set(found)):
                print("bad|%s|%s" % (title, x))
        print("info|%d functions reached from %d worker calls and triggers, %d statements on Citus tables read"
              % (len(self.checked), self.roots, self.count))


if __name__ == "__main__":
    Checker(json.load(sys.stdin)).run()
