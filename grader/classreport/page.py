"""The class report as one HTML page: inline CSS and SVG, no script, nothing fetched, so it
opens offline from a file:// URL and prints. Every text that comes from a submission (names,
messages, code) is escaped. Nothing is told by colour alone: shared lines carry a marker,
pass rates their numbers."""

from __future__ import annotations

import html

from grader.report.results import points
from grader.classreport import plots

CSS = """
body { font-family: system-ui, sans-serif; max-width: 84rem; margin: 1.5rem auto; padding: 0 1rem; color: #1a1a1a; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #1a1a1a; padding-bottom: .2rem; margin-top: 2rem; }
nav a { margin-right: .9rem; } .muted { color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
.card { border: 1px solid #1a1a1a; padding: .4rem .8rem; min-width: 7rem; }
.card b { display: block; font-size: 1.5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(34rem, 1fr)); gap: 1.5rem; align-items: start; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border-bottom: 1px solid #bbb; padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { border-bottom: 2px solid #1a1a1a; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: .7rem; border: 1px solid #1a1a1a; background: repeating-linear-gradient(45deg, #1a1a1a 0 1px, #fff 1px 4px); vertical-align: middle; }
svg.plot { width: 100%; height: auto; max-width: 44rem; }
details pre, pre.message { white-space: pre-wrap; background: #f4f4f4; padding: .4rem; font-size: .8rem; max-height: 16rem; overflow: auto; }
.pair { margin: 1rem 0 1.6rem; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
.code { font-family: ui-monospace, monospace; font-size: .75rem; border: 1px solid #999; overflow-x: auto; }
.code .where { background: #e8e8e8; padding: .15rem .4rem; font-family: system-ui, sans-serif; }
.code div.l { white-space: pre; padding: 0 .4rem 0 1.4rem; text-indent: -1rem; }
.code div.s { background: #ffe9a8; font-weight: 600; }
.code div.s::before { content: "\\00bb"; display: inline-block; width: 1rem; text-indent: 0; }
.code div.l:not(.s)::before { content: " "; display: inline-block; width: 1rem; text-indent: 0; }
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(
        f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rate(rate: float) -> str:
    return f'<span class="bar" style="width:{rate * 6:.2f}rem"></span> {100 * rate:.0f}%'


def _mib(value) -> str:
    return "" if value is None else f"{value:,.0f}"


def _student(name: str, links: dict[str, str]) -> str:
    return f'<a href="{esc(links[name])}">{esc(name)}</a>' if name in links else esc(name)


def render(data: dict, links: dict[str, str] | None = None, title: str = "Class report") -> str:
    """The page for `data` (grader.classreport.build.report_data); `links`: each
    submission's feedback page, relative to the report."""
    links = links or {}
    rows = data["submissions"]
    similarity = data.get("similarity")
    problems = data["problems"]
    cards = [
        (len(rows), "submissions"),
        (len(data["editions"]), "editions"),
        (sum(r["status"] == "complete" for r in rows), "full marks"),
        (sum(p["kind"] == "error" for p in problems), "could not be graded"),
        (sum(p["kind"] == "timed out" for p in problems), "timed out"),
    ]
    if similarity is not None:
        cards.append((len(similarity["pairs"]), "similar pairs"))
    sections = [
        _scores(data),
        _causes(data["causes"]),
        _similar(similarity, links),
        _checks(data["checks"]),
        _time(data, links),
        _problems(problems, links),
        _students(rows, links),
    ]
    nav = " ".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("scores", "Scores"),
            ("causes", "Failure causes"),
            ("similar", "Similar code"),
            ("checks", "Checks"),
            ("time", "Time and memory"),
            ("problems", "Errors and timeouts"),
            ("students", "Students"),
        )
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.get("notes") or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head><body>
<h1>{esc(title)}</h1>
<p class="muted">From {esc(", ".join(data["folders"]))}</p>
<nav>{nav}</nav>
<div class="cards">{"".join(f"<div class='card'><b>{n}</b>{esc(label)}</div>" for n, label in cards)}</div>
{f"<ul class='muted'>{notes}</ul>" if notes else ""}
{"".join(sections)}
</body></html>
"""


def _scores(data: dict) -> str:
    editions = data["editions"]
    table = _table(
        ["Edition", "Submissions", "Mean", "Median", "Out of", "Full marks", "Errors"],
        [
            [
                esc(e["edition"]),
                e["submissions"],
                points(e["mean"]),
                points(e["median"]),
                points(e["max_score"]),
                e["complete"],
                e["errors"],
            ]
            for e in editions
        ],
        numeric={1, 2, 3, 4, 5, 6},
    )
    parts = _table(
        ["Part", "Editions", "Graded", "All checks passed", "Share of the points"],
        [
            [
                esc(p["part"]),
                esc(", ".join(p["editions"])),
                p["submissions"],
                _rate(p["complete_rate"]),
                _rate(p["points_rate"]),
            ]
            for p in data["parts"]
        ],
        numeric={2},
    )
    histogram = plots.score_histograms(editions) if editions else ""
    part_plot = plots.part_pass_rates(data["parts"]) if data["parts"] else ""
    return f"""<section id="scores"><h2>Scores</h2>
<div class="grid"><div><h3>Score histogram per edition</h3>{histogram}{table}</div>
<div><h3>Pass rate per part</h3>{part_plot}{parts}</div></div></section>"""


def _causes(found: list[dict]) -> str:
    if not found:
        return '<section id="causes"><h2>Most common failure causes</h2><p>No check failed.</p></section>'
    rows = [
        [
            c["count"],
            esc(c["part"]),
            esc(c["cause"]),
            f"<details><summary>{esc(c['example']['check'])}</summary>"
            f"<pre>{esc(c['example']['message'])}</pre></details>",
        ]
        for c in found
    ]
    return f"""<section id="causes"><h2>Most common failure causes</h2>
<p class="muted">Grouped by the cause each feedback names first (numbers, shapes and names masked); a
submission counts once per cause, however many checks say it. The example is one submission's
feedback, its name taken out.</p>
{_table(["Submissions", "Part", "Cause", "Example"], rows, numeric={0})}</section>"""


def _similar(similarity: dict | None, links: dict[str, str]) -> str:
    if similarity is None:
        return ""
    ignored = {
        "starter": "the starter's code",
        "reference": "the reference solution's code",
        "common": f"code found in more than {100 * similarity['common']['share']:.0f}% of an edition's submissions "
        f"(and more than {similarity['common']['floor']})",
    }
    ignoring = "; ".join(ignored[k] for k in similarity["ignored"]) or "nothing"
    scope = "across editions" if similarity["across_editions"] else "within each edition"
    intro = (
        f"<p class='muted'>Pairs whose own code in a region is {100 * similarity['threshold']:.0f}% or more alike "
        f"(shared fingerprints over those of the smaller side; names, literals, comments and statement order do "
        f"not count), compared {scope}. Ignored: {esc(ignoring)}. A flag is a reason to look, not a verdict.</p>"
    )
    unreadable = similarity.get("unreadable") or []
    if unreadable:
        intro += (
            f"<p>{len(unreadable)} notebook{'s' if len(unreadable) > 1 else ''} could not be read for the "
            f"comparison (moved since grading? <code>--submissions DIR</code> finds them): "
            f"{esc(', '.join(unreadable[:20]))}{' ...' if len(unreadable) > 20 else ''}</p>"
        )
    pairs = similarity["pairs"]
    if not pairs:
        return (
            f'<section id="similar"><h2>Similar code</h2>{intro}<p>No pair above the threshold.</p></section>'
        )
    table = _table(
        ["Score", "Region", "Submission", "Submission", "Shared fingerprints"],
        [
            [
                f"{100 * p['score']:.0f}%",
                esc(p["region"]),
                _student(p["a"], links),
                _student(p["b"], links),
                f"{p['shared_fingerprints']} of {min(p['fingerprints'])}",
            ]
            for p in pairs
        ],
        numeric={0, 4},
    )
    details = "".join(_pair(p, i < 3) for i, p in enumerate(pairs))
    return f'<section id="similar"><h2>Similar code</h2>{intro}{table}{details}</section>'


def _pair(pair: dict, open_: bool) -> str:
    def side(name: str, blocks: list[dict]) -> str:
        inner = "".join(
            f"<div class='where'>{esc(name)}: {esc(b['where'])}</div>"
            + "".join(
                f"<div class='l{' s' if shared else ''}'>{esc(text) or ' '}</div>"
                for text, shared in b["lines"][:120]
            )
            for b in blocks
        )
        return f"<div class='code'>{inner}</div>"

    summary = f"{esc(pair['region'])}: {esc(pair['a'])} and {esc(pair['b'])} ({100 * pair['score']:.0f}%)"
    return (
        f"<details class='pair'{' open' if open_ else ''}><summary>{summary}; shared lines marked »</summary>"
        f"<div class='sides'>{side(pair['a'], pair['code']['a'])}{side(pair['b'], pair['code']['b'])}</div></details>"
    )


def _checks(rates: list[dict]) -> str:
    rows = [[esc(r["part"]), esc(r["check"]), f"{r['passed']}/{r['total']}", _rate(r["rate"])] for r in rates]
    return f'<section id="checks"><h2>Pass rate per check</h2>{_table(["Part", "Check", "Passed", "Rate"], rows, numeric={2})}</section>'


def _time(data: dict, links: dict[str, str]) -> str:
    rows = [
        [
            _student(s["name"], links),
            esc(s["edition"]),
            f"{s['seconds']:.1f}",
            _mib(s["peak_memory_mib"]),
            esc(s["status"]),
        ]
        for s in data["slowest"]
    ]
    measured = [s for s in data["submissions"] if s["peak_memory_mib"] is not None]
    plot = plots.time_and_memory(data["submissions"]) if measured else "<p>No memory was recorded.</p>"
    return f"""<section id="time"><h2>Time and memory per submission</h2>
<p class="muted">Seconds to grade each submission, and the peak resident memory of the sandbox process
that ran its code (pages shared with the grader's warm server included).</p>
<div class="grid"><div>{plot}</div><div><h3>The slowest ten</h3>
{_table(["Submission", "Edition", "Seconds", "Peak MiB", "Status"], rows, numeric={2, 3})}</div></div></section>"""


def _problems(problems: list[dict], links: dict[str, str]) -> str:
    if not problems:
        return '<section id="problems"><h2>Errors and timeouts</h2><p>None.</p></section>'
    rows = [[_student(p["name"], links), esc(p["kind"]), esc(p["detail"])] for p in problems]
    return f'<section id="problems"><h2>Errors and timeouts</h2>{_table(["Submission", "What", "Detail"], rows)}</section>'


def _students(rows: list[dict], links: dict[str, str]) -> str:
    body = [
        [
            _student(r["name"], links),
            esc(r["edition"]),
            f"{points(r['score'])} / {points(r['max_score'])}",
            esc(r["status"]),
            f"{r['seconds']:.1f}",
            _mib(r["peak_memory_mib"]),
        ]
        for r in rows
    ]
    return (
        '<section id="students"><h2>Students</h2><p class="muted">Each name links to that student\'s own '
        "feedback page.</p>"
        + _table(["Submission", "Edition", "Score", "Status", "Seconds", "Peak MiB"], body, numeric={2, 4, 5})
        + "</section>"
    )
