// The console's little JavaScript: the player, and copying fresh playback and download links.
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

for (const b of document.querySelectorAll('button.play')) {
  b.addEventListener('click', async () => {
    const row = b.closest('tr');
    try {
      const links = await freshLinks(b.dataset.file);
      const box = document.getElementById('player-box');
      const player = document.getElementById('player');
      box.classList.remove('hidden');
      player.src = links.play_url;
      document.getElementById('player-title').textContent = b.dataset.title;
      player.play().catch(() => {});
    } catch (e) { refusal(row, e.message); }
  });
}

// Links work for 10 minutes; the button always asks the relay for fresh ones.
for (const b of document.querySelectorAll('button.copy')) {
  b.addEventListener('click', async () => {
    const r = await fetch(`/api/v1/recordings/${b.dataset.file}/links`, { method: 'POST', credentials: 'same-origin' });
    if (!r.ok) { b.textContent = 'Not allowed'; return; }
    const links = await r.json();
    const text = `Play: ${location.origin}${links.play_url}\nDownload: ${location.origin}${links.download_url}\n(valid 10 minutes)`;
    try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; } catch { window.prompt('Copy these links', text); }
    setTimeout(() => { b.textContent = 'Copy links'; }, 2000);
  });
}

// Copy a one-time link shown in a text box.
for (const b of document.querySelectorAll('button.copy-text')) {
  b.addEventListener('click', async () => {
    const input = document.getElementById(b.dataset.for);
    try { await navigator.clipboard.writeText(input.value); b.textContent = 'Copied'; } catch { input.select(); }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
}

// Forms that change something for good ask first.
for (const f of document.querySelectorAll('form[data-confirm]')) {
  f.addEventListener('submit', (e) => {
    if (!window.confirm(f.dataset.confirm)) e.preventDefault();
  });
}
