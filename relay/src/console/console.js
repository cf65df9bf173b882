// The console's little JavaScript: fresh playback and download links, the player's speed and
// keys, the Active sessions list that refreshes itself, confirmations, and the zone search.
'use strict';

// Every cell carries its column's name, which the phone layout shows beside it (style.css).
function labelCells(root) {
  for (const table of root.querySelectorAll('table')) {
    const heads = Array.from(table.querySelectorAll('thead th')).map((th) => th.textContent.trim());
    for (const tr of table.querySelectorAll('tbody tr')) {
      Array.from(tr.children).forEach((td, i) => {
        if (!td.dataset.label && heads[i]) td.dataset.label = heads[i];
      });
    }
  }
}
labelCells(document);

// Playback and download links work for 10 minutes: every click asks the relay for fresh ones, so a
// page left open keeps working, and a refusal (the policy changed, the sign-in ended) says why.
// `use=play`: links for this page's own player, whose plays the relay audits when they happen.
async function freshLinks(file, forPlay) {
  const url = `/api/v1/recordings/${file}/links${forPlay ? '?use=play' : ''}`;
  const r = await fetch(url, { method: 'POST', credentials: 'same-origin' });
  let body = null;
  try { body = await r.json(); } catch (e) {}
  if (!r.ok) {
    const why = body && body.error ? body.error.message : `The relay answered ${r.status}.`;
    throw new Error(r.status === 401 ? `${why} Sign in again.` : why);
  }
  return body;
}

function refusal(row, message) {
  let p = row.querySelector('.refusal');
  if (!p) {
    p = document.createElement('p');
    p.className = 'error refusal small';
    p.setAttribute('role', 'alert');
    row.querySelector('td.actions').appendChild(p);
  }
  p.textContent = message;
}

const player = document.getElementById('player');

// One monitor's parts (the files it was split into) play as one recording: a timeline over all of
// them with the part boundaries marked, the next part loaded when one ends, seeking across parts.
const show = {
  title: '', parts: [], index: -1, total: 0, loading: 0,
};

function clockText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function whereIs(t) {
  for (let i = 0; i < show.parts.length; i++) {
    const p = show.parts[i];
    if (t < p.start + p.duration || i === show.parts.length - 1) return [i, Math.max(0, t - p.start)];
  }
  return [0, 0];
}

function drawPosition() {
  const timeline = document.getElementById('timeline');
  const part = show.parts[show.index];
  if (!part) return;
  const t = part.start + (player.currentTime || 0);
  if (document.activeElement !== timeline || !timeline.dataset.dragging) timeline.value = String(t);
  document.getElementById('clock').textContent = `${clockText(t)} / ${clockText(show.total)}`;
  document.getElementById('player-title').textContent =
    `${show.title}, part ${show.index + 1} of ${show.parts.length}`;
  document.getElementById('pause').textContent = player.paused ? 'Play' : 'Pause';
}

// A part's play link is kept while it works (9 of its 10 minutes), so that seeking back and forth
// across parts is one viewing, audited once per part, not a new link each time.
const playLinks = new Map();

async function playLink(file) {
  const kept = playLinks.get(file);
  if (kept && kept.until > Date.now()) return kept.url;
  const links = await freshLinks(file, true);
  playLinks.set(file, { url: links.play_url, until: Date.now() + 9 * 60 * 1000 });
  return links.play_url;
}

async function loadPart(i, at, play) {
  const part = show.parts[i];
  const ticket = ++show.loading;
  let url;
  try { url = await playLink(part.file); } catch (e) { refusal(part.row, e.message); return; }
  if (ticket !== show.loading) return;
  show.index = i;
  const rate = Number(document.getElementById('speed').value) || 1;
  player.src = url;
  player.addEventListener('loadedmetadata', () => {
    part.retried = false;
    player.playbackRate = rate;
    player.currentTime = Math.min(at, player.duration || at);
    if (play) player.play().catch(() => {});
    drawPosition();
  }, { once: true });
  for (const r of document.querySelectorAll('tr.playing')) r.classList.remove('playing');
  part.row.classList.add('playing');
  drawPosition();
}

function seekTo(t, play) {
  const [i, at] = whereIs(Math.max(0, Math.min(show.total, t)));
  if (i === show.index) { player.currentTime = at; drawPosition(); } else loadPart(i, at, play);
}

function startMonitor(table, fromFile) {
  // A new viewing: links made for it.
  playLinks.clear();
  show.title = table.dataset.monitorTitle;
  show.parts = [];
  let start = 0;
  for (const row of table.querySelectorAll('tr[data-playable]')) {
    const duration = Number(row.dataset.duration) / 1000;
    show.parts.push({ file: row.dataset.file, row, start, duration });
    start += duration;
  }
  show.total = start;
  const timeline = document.getElementById('timeline');
  timeline.max = String(show.total);
  const marks = document.getElementById('marks');
  marks.replaceChildren();
  for (const p of show.parts.slice(1)) {
    const m = document.createElement('span');
    m.className = 'mark';
    m.style.left = `${(100 * p.start) / (show.total || 1)}%`;
    m.title = `Part ${show.parts.indexOf(p) + 1} starts`;
    marks.appendChild(m);
  }
  document.getElementById('player-box').classList.remove('hidden');
  const first = Math.max(0, show.parts.findIndex((p) => p.file === fromFile));
  show.index = -1;
  loadPart(first, 0, true);
  document.getElementById('player-box').focus();
}

if (player) {
  player.addEventListener('timeupdate', drawPosition);
  player.addEventListener('play', drawPosition);
  player.addEventListener('pause', drawPosition);
  // A kept link that stopped working (its 10 minutes, a policy change): one fresh try, where the
  // viewing was; a refusal then is said on the part's row.
  player.addEventListener('error', () => {
    const part = show.parts[show.index];
    if (!part || part.retried || !playLinks.has(part.file)) return;
    part.retried = true;
    playLinks.delete(part.file);
    loadPart(show.index, 0, true);
  });
  player.addEventListener('ended', () => {
    if (show.index + 1 < show.parts.length) loadPart(show.index + 1, 0, true);
  });
  const timeline = document.getElementById('timeline');
  timeline.addEventListener('input', () => { timeline.dataset.dragging = '1'; });
  timeline.addEventListener('change', () => {
    delete timeline.dataset.dragging;
    seekTo(Number(timeline.value), !player.paused);
  });
  document.getElementById('pause').addEventListener('click', () => {
    if (player.paused) player.play().catch(() => {}); else player.pause();
  });
}

for (const b of document.querySelectorAll('button.play-monitor')) {
  b.addEventListener('click', () => {
    startMonitor(document.querySelector(`table[data-monitor-index="${b.dataset.monitor}"]`), null);
  });
}

for (const b of document.querySelectorAll('button.play')) {
  b.addEventListener('click', () => startMonitor(b.closest('table'), b.dataset.file));
}

// Links work for 10 minutes; the button always asks the relay for fresh ones.
for (const b of document.querySelectorAll('button.copy')) {
  b.addEventListener('click', async () => {
    let links;
    try { links = await freshLinks(b.dataset.file, false); } catch (e) { refusal(b.closest('tr'), e.message); return; }
    const text = `Play: ${location.origin}${links.play_url}\nDownload: ${location.origin}${links.download_url}\n(valid 10 minutes)`;
    try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; } catch { window.prompt('Copy these links', text); }
    setTimeout(() => { b.textContent = 'Copy links'; }, 2000);
  });
}

// The player: speed from 0.5x to 8x, and keys to seek across the parts (left and right 5 s, J and
// L 10 s, Home and End, Space or K to pause, < and > for slower and faster).
const SPEEDS = [0.5, 1, 1.5, 2, 4, 8];
const speed = document.getElementById('speed');
if (player && speed) {
  const setSpeed = (r) => { player.playbackRate = r; speed.value = String(r); };
  speed.addEventListener('change', () => setSpeed(Number(speed.value)));
  document.getElementById('player-box').addEventListener('keydown', (e) => {
    if (e.target === speed || e.ctrlKey || e.metaKey || e.altKey) return;
    const part = show.parts[show.index];
    const now = part ? part.start + player.currentTime : 0;
    const seek = (d) => seekTo(now + d, !player.paused);
    const i = SPEEDS.indexOf(player.playbackRate);
    switch (e.key) {
      case 'ArrowLeft': seek(-5); break;
      case 'ArrowRight': seek(5); break;
      case 'j': case 'J': seek(-10); break;
      case 'l': case 'L': seek(10); break;
      case 'Home': seekTo(0, !player.paused); break;
      case 'End': seekTo(show.total, false); break;
      case ' ': case 'k': case 'K': if (player.paused) player.play().catch(() => {}); else player.pause(); break;
      case '<': case ',': setSpeed(SPEEDS[Math.max(0, (i < 0 ? 1 : i) - 1)]); break;
      case '>': case '.': setSpeed(SPEEDS[Math.min(SPEEDS.length - 1, (i < 0 ? 1 : i) + 1)]); break;
      default: return;
    }
    e.preventDefault();
  }, true);
}

// Copy a one-time link shown in a text box.
for (const b of document.querySelectorAll('button.copy-text')) {
  b.addEventListener('click', async () => {
    const input = document.getElementById(b.dataset.for);
    try { await navigator.clipboard.writeText(input.value); b.textContent = 'Copied'; } catch { input.select(); }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
}

// Forms that change something for good ask first (also those a refresh brought in).
document.addEventListener('submit', (e) => {
  const f = e.target;
  if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) e.preventDefault();
});

// The Active sessions list refreshes itself; an ended sign-in or an unreachable relay is said.
const live = document.querySelector('[data-refresh]');
if (live) {
  const status = document.getElementById('refresh-status');
  const refresh = async () => {
    try {
      const r = await fetch(live.dataset.refresh, { credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 401) {
        status.textContent = 'Your sign-in has ended: sign in again to see live sessions.';
        status.className = 'error';
        return;
      }
      if (!r.ok) throw new Error(`the relay answered ${r.status}`);
      live.innerHTML = await r.text();
      labelCells(live);
      // The relay's time, in the team's zone, as every other time in the console.
      const made = live.querySelector('#list-made');
      status.textContent = `Updated at ${made ? made.dataset.at : 'an unknown time'}; updates by itself every 5 seconds.`;
      status.className = 'muted small';
    } catch (e) {
      status.textContent = `Could not update (${e.message}); trying again.`;
      status.className = 'error';
    }
    setTimeout(refresh, 5000);
  };
  setTimeout(refresh, 5000);
}

// Search a long list (the time zones): options that do not match are hidden, the chosen one kept.
for (const input of document.querySelectorAll('input[data-filters]')) {
  const select = document.getElementById(input.dataset.filters);
  input.addEventListener('input', () => {
    const words = input.value.toLowerCase().replace(/ /g, '_');
    let first = null;
    for (const o of select.options) {
      const show = o.selected || o.value.toLowerCase().includes(words);
      o.hidden = !show;
      if (show && !o.selected && !first) first = o;
    }
    if (first && !select.options[select.selectedIndex].value.toLowerCase().includes(words)) first.selected = true;
  });
}
