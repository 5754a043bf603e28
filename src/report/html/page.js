// Shows the crash point under the pointer or the keyboard focus in the
// panel at the bottom, with its replay command to copy. No network.
(function () {
  var panel = document.getElementById('detail');
  var name = panel.querySelector('.name');
  var outcome = panel.querySelector('.outcome');
  var detail = panel.querySelector('.what');
  var replay = panel.querySelector('input');
  var copy = panel.querySelector('button');
  function show(cell) {
    name.textContent = cell.getAttribute('data-name');
    outcome.textContent = cell.getAttribute('data-outcome');
    detail.textContent = cell.getAttribute('data-detail') || '';
    replay.value = cell.getAttribute('data-replay') || '';
    copy.disabled = !replay.value;
    copy.textContent = 'Copy';
  }
  document.querySelectorAll('.cell').forEach(function (cell) {
    cell.addEventListener('mouseenter', function () { show(cell); });
    cell.addEventListener('focus', function () { show(cell); });
    cell.addEventListener('click', function () { show(cell); replay.focus(); replay.select(); });
  });
  // page.html#LAYOUT/POINT focuses that cell (links to one window; checks).
  var want = decodeURIComponent(location.hash.slice(1));
  if (want) {
    document.querySelectorAll('.cell').forEach(function (cell) {
      if (cell.getAttribute('data-layout') + '/' + cell.getAttribute('data-point') === want) {
        cell.focus(); show(cell);
      }
    });
  }
  copy.addEventListener('click', function () {
    replay.select();
    var done = function () { copy.textContent = 'Copied'; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(replay.value).then(done, function () {
        document.execCommand('copy'); done();
      });
    } else { document.execCommand('copy'); done(); }
  });
})();
