(function(){
  var root = document.getElementById('live');
  if (!root) return;
  var COLORS = ['#d9480f', '#1c7ed6', '#2b8a3e', '#ae3ec9', '#f59f00', '#495057', '#0ca678', '#e64980'];
  var SVG = 'http://www.w3.org/2000/svg';
  var looks = 0;

  function put(id, value){ var el = document.getElementById(id); if (el) el.textContent = value; }
  function num(v){
    if (v === null || v === undefined) return 'n/a';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 100 ? v.toFixed(4) : v.toFixed(1);
  }
  function duration(s){
    if (s === null || s === undefined) return 'unknown';
    s = Math.round(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  }
  function rows(id, list, cells){
    var table = document.getElementById(id);
    while (table.firstChild) table.removeChild(table.firstChild);
    list.forEach(function(item){
      var tr = document.createElement('tr');
      cells(item).forEach(function(value){ var td = document.createElement('td'); td.textContent = value; tr.appendChild(td); });
      table.appendChild(tr);
    });
  }
  function chart(errors){
    var svg = document.getElementById('live-errors');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var kinds = Object.keys(errors.kinds).sort();
    var bins = kinds.length ? errors.kinds[kinds[0]].length : 0;
    var tallest = 1;
    for (var b = 0; b < bins; b++) {
      var sum = 0;
      kinds.forEach(function(k){ sum += errors.kinds[k][b]; });
      tallest = Math.max(tallest, sum);
    }
    var width = bins ? 600 / bins : 600;
    for (var i = 0; i < bins; i++) {
      var y = 140;
      kinds.forEach(function(k, n){
        var h = errors.kinds[k][i] / tallest * 130;
        if (!h) return;
        var bar = document.createElementNS(SVG, 'rect');
        bar.setAttribute('x', String(i * width + 1));
        bar.setAttribute('width', String(Math.max(1, width - 2)));
        bar.setAttribute('y', String(y - h));
        bar.setAttribute('height', String(h));
        bar.setAttribute('fill', COLORS[n % COLORS.length]);
        bar.setAttribute('data-kind', k);
        svg.appendChild(bar);
        y -= h;
      });
    }
    var legend = document.getElementById('live-legend');
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    if (!kinds.length) { legend.textContent = 'none yet'; return; }
    kinds.forEach(function(k, n){
      var total = errors.kinds[k].reduce(function(a, c){ return a + c; }, 0);
      var item = document.createElement('span');
      item.className = 'badge';
      item.style.background = COLORS[n % COLORS.length];
      item.style.color = '#fff';
      item.textContent = k + ': ' + total;
      legend.appendChild(item);
      legend.appendChild(document.createTextNode(' '));
    });
    legend.appendChild(document.createTextNode('(bins of ' + duration(errors.width_s) + ')'));
  }
  function show(d){
    root.setAttribute('data-state', d.state);
    var badge = document.getElementById('live-state');
    badge.textContent = d.state;
    badge.className = 'badge state-' + d.state;
    put('live-status', d.status || '');
    put('live-updated', d.written_at || 'not yet');
    put('live-records', String(d.records));
    put('live-target', d.target === null || d.target === undefined ? '?' : String(d.target));
    put('live-what', d.what);
    put('live-rate', (d.records_per_s || 0).toFixed(2));
    put('live-eta', d.state === 'ended' ? 'none' : duration(d.eta_s));
    put('live-inflight', num(d.in_flight));
    put('live-window', d.window === null || d.window === undefined ? 'n/a' : String(Math.round(d.window * 100) / 100));
    put('live-concurrency', num(d.concurrency));
    rows('live-spend', d.spend, function(b){ return [b.budget, num(b.spent), b.limit === null ? 'no limit' : 'of ' + num(b.limit)]; });
    rows('live-events', d.events, function(e){ return [e.at, e.event, e.text]; });
    chart(d.errors);
  }
  function look(){
    fetch('/live.json', {cache: 'no-store'})
      .then(function(answer){ return answer.json(); })
      .then(function(d){
        show(d);
        looks += 1;
        root.setAttribute('data-looks', String(looks));
        setTimeout(look, d.state === 'running' ? 1000 : 5000);
      })
      .catch(function(){ setTimeout(look, 5000); });
  }
  look();
})();
