// The console's little JavaScript: fresh playback and download links, the player's speed and
// keys, the Active sessions list that refreshes itself, confirmations, and the zone search.
'use strict';

// Playback and download links work for 10 minutes: every click asks the relay for fresh ones, so a
// page left open keeps working, and a refusal (the policy changed, the sign-in ended) says why.
async function freshLinks(file) {
  const r = await fetch(`/api/v1/recordings/${file}/links`, { method: 'POST', credentials: 'same-origin' });
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

for (const b of document.querySelectorAll('button.play')) {
  b.addEventListener('click', async () => {
    const row = b.closest('tr');
    try {
      const links = await freshLinks(b.dataset.file);
      document.getElementById('player-box').classList.remove('hidden');
      const rate = player.playbackRate;
      player.src = links.play_url;
      player.playbackRate = rate;
      document.getElementById('player-title').textContent = b.dataset.title;
      player.play().catch(() => {});
      player.focus();
    } catch (e) { refusal(row, e.message); }
  });
}

// Links work for 10 minutes; the button always asks the relay for fresh ones.
for (const b of document.querySelectorAll('button.copy')) {
  b.addEventListener('click', async () => {
    let links;
    try { links = await freshLinks(b.dataset.file); } catch (e) { refusal(b.closest('tr'), e.message); return; }
    const text = `Play: ${location.origin}${links.play_url}\nDownload: ${location.origin}${links.download_url}\n(valid 10 minutes)`;
    try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; } catch { window.prompt('Copy these links', text); }
    setTimeout(() => { b.textContent = 'Copy links'; }, 2000);
  });
}

// The player: speed from 0.5x to 8x, and keys to seek (left and right 5 s, J and L 10 s, Home
// and End, Space or K to pause, < and > for slower and faster).
const SPEEDS = [0.5, 1, 1.5, 2, 4, 8];
const speed = document.getElementById('speed');
if (player && speed) {
  const setSpeed = (r) => { player.playbackRate = r; speed.value = String(r); };
  speed.addEventListener('change', () => setSpeed(Number(speed.value)));
  player.addEventListener('loadedmetadata', () => { player.playbackRate = Number(speed.value); });
  document.getElementById('player-box').addEventListener('keydown', (e) => {
    if (e.target === speed || e.ctrlKey || e.metaKey || e.altKey) return;
    const seek = (d) => { player.currentTime = Math.max(0, Math.min(player.duration || 0, player.currentTime + d)); };
    const i = SPEEDS.indexOf(player.playbackRate);
    switch (e.key) {
      case 'ArrowLeft': seek(-5); break;
      case 'ArrowRight': seek(5); break;
      case 'j': case 'J': seek(-10); break;
      case 'l': case 'L': seek(10); break;
      case 'Home': player.currentTime = 0; break;
      case 'End': player.currentTime = player.duration || 0; break;
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
      status.textContent = `Updated at ${new Date().toLocaleTimeString()}; updates by itself every 5 seconds.`;
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
