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
