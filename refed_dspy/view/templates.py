"""The viewer's pages (Jinja2, autoescaped). Everything is inline: the pages load nothing from the network."""

from __future__ import annotations

STYLE = """
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:baseline;flex-wrap:wrap}
header a{color:#cfd8ff;text-decoration:none}header a.on{color:#fff;font-weight:600}header .brand{font-weight:700;color:#fff}
main{padding:1em 1.4em;max-width:1500px;margin:auto}
.note{background:#fff4e5;border:1px solid #f0b45a;padding:.5em .8em;border-radius:6px;margin:.4em 0}
.err{background:#fdecec;border:1px solid #e08a8a;padding:.6em .9em;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e3e6ea;padding:5px 8px;
text-align:left;font-size:14px;vertical-align:top}th{background:#eef0f4}tr:hover td{background:#f9fafc}
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin:.6em 0 1em}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select{font-size:14px;padding:4px 6px}input[type=search]{width:22em}
.muted{color:#6b7280}.pager{margin:1em 0;display:flex;gap:1em}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1em}.card{background:#fff;border:1px solid #e3e6ea;border-radius:8px;
padding:.8em 1em;margin:.6em 0;overflow-wrap:anywhere}.card h3{margin:.1em 0 .5em;font-size:15px}
.text{white-space:pre-wrap;font-size:14px;line-height:1.45}del{background:#ffd7d5;text-decoration:line-through}
ins{background:#ccf2d4;text-decoration:none}pre.raw{white-space:pre-wrap;background:#f3f4f6;padding:.5em;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;background:#e8eaf0}
.win{background:#ccf2d4}.loss{background:#ffd7d5}.tie{background:#fff1c2}.kept{background:#ccf2d4}.removed{background:#ffd7d5}
.kv td:first-child{width:14em;color:#555}ul{margin:.2em 0 .2em 1.2em;padding:0}
.grid3{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em}
"""

SCRIPT = """
(function(){
  document.addEventListener('keydown', function(e){
    var t = e.target && e.target.tagName;
    if (t === 'INPUT' || t === 'SELECT' || t === 'TEXTAREA') return;
    if (e.key === '/') { var q = document.getElementById('q'); if (q) { e.preventDefault(); q.focus(); } }
    var nav = {j: 'next', k: 'prev'}[e.key];
    if (nav) { var a = document.querySelector('a[rel=' + nav + ']'); if (a) { window.location = a.href; } }
  });
  var toggle = document.getElementById('diff-toggle');
  if (toggle) {
    toggle.addEventListener('change', function(){
      document.querySelectorAll('.diff del, .diff ins').forEach(function(el){
        el.style.background = toggle.checked ? '' : 'transparent';
        el.style.textDecoration = toggle.checked ? '' : 'none';
      });
    });
  }
  document.body.setAttribute('data-ready', '1');
})();
"""

BASE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{ title }} - refed view</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><style>{{ style }}</style></head><body>
<header><span class="brand">refed view</span>
<a href="/" class="{{ 'on' if page == 'samples' }}">Samples</a>
<a href="/rejects" class="{{ 'on' if page == 'rejects' }}">Rejects</a>
{% if status.kind == 'compare' %}<a href="/compare" class="{{ 'on' if page == 'compare' }}">Compare</a>{% endif %}
{% if has_report %}<a href="/report">Report</a>{% endif %}
<span class="muted">{{ status.path }}</span></header>
<main>
{% for n in status.notes %}<div class="note">{{ n }}</div>{% endfor %}
{% block body %}{% endblock %}
</main><script>{{ script|safe }}</script></body></html>"""

SAMPLES = """{% extends "base" %}{% block body %}
<p>{{ total }} of {{ status.samples }} samples match
{%- if status.method %} · method <b>{{ status.method }}</b>{% endif %}
{%- if status.teacher %} · teacher <b>{{ status.teacher }}</b>{% endif %} · {{ status.judged }} judged</p>
<form class="filters" method="get" action="/">
<label>search (instruction and responses) <input type="search" id="q" name="q" value="{{ f.q }}" placeholder="press / to search"></label>
{% for key in ['reference', 'feature', 'method', 'verdict', 'outcome'] if choices[key] %}
<label>{{ key }}<select name="{{ key }}"><option value="">all</option>
{% for v in choices[key] %}<option value="{{ v }}" {{ 'selected' if f[key] == v }}>{{ v }}</option>{% endfor %}</select></label>
{% endfor %}
<label>score from <input type="number" name="score_min" step="0.5" min="1" max="10" value="{{ f.score_min if f.score_min is not none }}" style="width:5em"></label>
<label>to <input type="number" name="score_max" step="0.5" min="1" max="10" value="{{ f.score_max if f.score_max is not none }}" style="width:5em"></label>
<button type="submit" id="apply">Apply</button> <a href="/">reset</a></form>
<table id="samples"><tr><th>instruction</th><th>feature</th>{% if choices.method|length > 1 %}<th>method</th>{% endif %}
<th>reference</th><th>score</th><th>improved vs draft</th>{% if choices.outcome %}<th>filter</th>{% endif %}</tr>
{% for r in rows %}<tr class="row"><td><a href="/sample/{{ r.id }}">{{ r.instruction|truncate(180) }}</a></td>
<td>{{ r.feature }}</td>{% if choices.method|length > 1 %}<td>{{ r.method }}</td>{% endif %}
<td><a href="/?reference={{ r.reference_id }}">{{ r.reference_id[:8] }}</a></td>
<td>{{ '%.1f'|format(r.score) if r.score is not none else '' }}</td>
<td>{% if r.verdict %}<span class="badge {{ r.verdict }}">{{ r.verdict }}</span>{% endif %}</td>
{% if choices.outcome %}<td>{% if r.outcome %}<span class="badge {{ r.outcome }}">{{ r.outcome }}</span>{% endif %}</td>{% endif %}</tr>
{% endfor %}</table>
<div class="pager">{% if prev_url %}<a rel="prev" href="{{ prev_url }}">&larr; previous</a>{% endif %}
<span class="muted">page {{ page_no }} of {{ pages }}</span>
{% if next_url %}<a rel="next" href="{{ next_url }}">next &rarr;</a>{% endif %}</div>
{% endblock %}"""

SAMPLE = """{% extends "base" %}{% block body %}
<p><a href="/">&larr; all samples</a> · <span class="muted">sample {{ s.meta.id }}</span>
{% if outcome %} · <span class="badge {{ outcome[0] }}">{{ outcome[0] }}</span> {{ outcome[1] }}{% endif %}</p>
<div class="card"><h3>Instruction</h3><div class="text" id="instruction">{{ s.instruction }}</div></div>
{% if s.improved_response %}
<p><label><input type="checkbox" id="diff-toggle" checked> highlight what the improvement changed</label>
· {{ '%.0f'|format(changed * 100) }}% of the words changed</p>
<div class="cols diff"><div class="card"><h3>Draft</h3><div class="text" id="draft">{% for op, t in diff %}{% if op == 'del' %}<del>{{ t }}</del>{% elif op == 'same' %}{{ t }}{% endif %}{% endfor %}</div></div>
<div class="card"><h3>Improved</h3><div class="text" id="improved">{% for op, t in diff %}{% if op == 'ins' %}<ins>{{ t }}</ins>{% elif op == 'same' %}{{ t }}{% endif %}{% endfor %}</div></div></div>
{% else %}<div class="card"><h3>Response</h3><div class="text" id="draft">{{ s.response }}</div></div>{% endif %}
{% if s.analysis or s.implementation_strategy %}<div class="cols">
<div class="card"><h3>Analysis</h3>{% for key, items in (s.analysis or {}).items() %}<b>{{ key|replace('_', ' ') }}</b>
<ul>{% for it in items %}<li>{{ it }}</li>{% endfor %}</ul>{% endfor %}</div>
<div class="card"><h3>Plan</h3>{% set plan = s.implementation_strategy or {} %}<ul>{% for it in plan.planned_changes or [] %}<li>{{ it }}</li>{% endfor %}</ul>
{% if plan.rationale %}<p class="text">{{ plan.rationale }}</p>{% endif %}</div></div>{% endif %}
{% if s.reflection %}<div class="card"><h3>Reflection</h3><div class="text">{{ s.reflection.instruction_critique or '' }}
{{ s.reflection.response_critique or '' }}</div></div>{% endif %}
<div class="card" id="judge"><h3>Judge</h3>{% if j %}
{% if j.pointwise %}<table class="kv">{% for c, v in j.pointwise.scores.items() %}<tr><td>{{ c|replace('_', ' ') }}</td><td class="score">{{ v }}</td></tr>{% endfor %}
<tr><td>mean</td><td><b>{{ j.pointwise.overall }}</b></td></tr></table><p class="text">{{ j.pointwise.rationale }}</p>{% endif %}
{% if j.pairwise %}<p>improved vs draft: <span class="badge {{ verdict }}">{{ verdict }}</span> (verdicts {{ j.pairwise.verdicts|join(' / ') }}{{ ', position bias' if j.pairwise.flipped }})</p>
<div class="cols">{% for why in j.pairwise.rationales %}<div class="text pairwise">{{ loop.index }}. {{ why }}</div>{% endfor %}</div>{% endif %}
{% else %}<p class="muted">{{ judge_failure or 'not judged' }}</p>{% endif %}</div>
<div class="cols"><div class="card" id="reference"><h3>Reference pair</h3>{% if ref %}<b>Instruction</b><div class="text">{{ ref[0] }}</div>
<b>Response</b><div class="text">{{ ref[1] }}</div>{% elif s.original %}<b>Instruction</b><div class="text">{{ s.original.instruction }}</div>
<b>Response</b><div class="text">{{ s.original.response }}</div>{% else %}<p class="muted">the reference text is not available here (its seeds cannot be read)</p>{% endif %}</div>
<div class="card"><h3>Reference feedback</h3>{% if fb %}{% for key in ['subject_areas', 'relevant_skills', 'response_feedback'] if fb[key] %}
<b>{{ key|replace('_', ' ') }}</b><div class="text">{{ fb[key] }}</div>{% endfor %}{% else %}<p class="muted">none for this method</p>{% endif %}</div></div>
<div class="card"><h3>Provenance</h3><table class="kv"><tr><td>reference</td><td><a href="/?reference={{ s.meta.reference_id }}">{{ s.meta.reference_id }}</a></td></tr>
<tr><td>feature</td><td>{{ s.meta.feature }}</td></tr><tr><td>method</td><td>{{ s.meta.method }}</td></tr>
<tr><td>teacher</td><td>{{ s.meta.teacher }}</td></tr><tr><td>program</td><td>{{ s.meta.program }}</td></tr>
<tr><td>LM calls</td><td>{{ u.calls|default('?') }} paid, {{ u.cached_calls|default(0) }} from the cache{{ ', %d repairs'|format(u.repairs) if u.repairs }}</td></tr>
<tr><td>tokens</td><td>{{ u.prompt_tokens|default('?') }} prompt, {{ u.completion_tokens|default('?') }} completion</td></tr>
<tr><td>cost</td><td>{{ '$%.6f'|format(u.cost_usd) if u.cost_usd is defined and u.cost_usd is not none else 'unknown' }}</td></tr>
<tr><td>made</td><td>{{ s.meta.created_at or '' }}</td></tr></table></div>
{% endblock %}"""

REJECTS = """{% extends "base" %}{% block body %}
<p>{{ total }} rejects in {{ groups|length }} groups (synthesis and judge). Each keeps the error and, where the model
returned something, the start of what it returned.</p>
<table id="groups"><tr><th>stage</th><th>reason</th><th>count</th></tr>
{% for g in groups %}<tr><td>{{ g.stage }}</td><td><a href="/rejects?stage={{ g.stage }}&reason={{ g.reason }}">{{ g.reason }}</a></td><td>{{ g.count }}</td></tr>{% endfor %}</table>
{% for g in shown %}<h2 id="{{ g.stage }}-{{ g.reason }}">{{ g.stage }}: {{ g.reason }} ({{ g.count }})</h2>
{% for r in g['items'][:limit] %}<div class="card reject"><div>{% if r.run %}<span class="badge">{{ r.run }}</span> {% endif %}
<span class="muted">{{ r.item_id or '' }}</span> {{ 'final' if r.final is not false else 'will be retried' }}</div>
<div class="text">{{ r.detail }}</div>{% if r.instruction %}<div class="muted text">instruction: {{ r.instruction|truncate(300) }}</div>{% endif %}
{% if r.raw %}<details open><summary>what the model returned</summary><pre class="raw">{{ r.raw }}</pre></details>{% endif %}</div>{% endfor %}
{% if g.count > limit %}<p><a href="/rejects?stage={{ g.stage }}&reason={{ g.reason }}&all=1">all {{ g.count }}</a></p>{% endif %}
{% endfor %}{% endblock %}"""

COMPARE = """{% extends "base" %}{% block body %}
<form class="filters" method="get" action="/compare"><label>reference <select name="reference" id="reference-pick">
{% for ref, n in refs %}<option value="{{ ref }}" {{ 'selected' if ref == reference }}>{{ ref[:12] }} ({{ n }} samples)</option>{% endfor %}
</select></label><button type="submit">Show</button></form>
{% if reference %}<div class="grid3">{% for run, samples in by_run.items() %}<div class="card method"><h3>{{ run }} ({{ samples|length }})</h3>
{% for s in samples %}<div class="card"><a href="/sample/{{ s.meta.id }}"><b>{{ s.instruction|truncate(200) }}</b></a>
<div class="text">{{ (s.improved_response or s.response)|truncate(600) }}</div></div>{% else %}<p class="muted">no sample</p>{% endfor %}</div>
{% endfor %}</div>{% endif %}{% endblock %}"""

ERROR = """{% extends "base" %}{% block body %}<div class="err"><b>{{ heading }}</b><p>{{ message }}</p></div>{% endblock %}"""

TEMPLATES = {"base": BASE, "samples": SAMPLES, "sample": SAMPLE, "rejects": REJECTS, "compare": COMPARE, "error": ERROR}
