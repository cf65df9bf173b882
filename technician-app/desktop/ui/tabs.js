// Several sessions at once, each in a tab of the window (loaded after app.js, whose functions it
// uses). Every tab keeps the events of its session; the tab shown acts on them as they come, and a
// tab shown again is rebuilt by replaying them into the emptied session view. The app draws only
// the shown session's video (a keyframe is asked for when a tab is shown again), and sends input,
// menus, chat and files to it alone. A session that ends behind another tab closes its tab and
// says so; a lost one is marked until it is shown.

// The tabs in the order opened: { channel, target, name, id, log, unseen, unread, lost, closed }.
const tabs = [];
// The tab whose session is on screen (null: the device list).
let shownTab = null;
// True while a tab's events are replayed (they are not new: no unread count).
let replaying = false;

// Event kinds where only the latest matters, by what identifies them.
const LATEST = {
  transfer: (e) => `transfer:${e.id}`,
  picture: () => 'picture',
  reconnecting: () => 'reconnecting',
  clipboard: () => 'clipboard',
  remoteClipboard: () => 'remoteClipboard',
  recording: () => 'recording',
  monitors: () => 'monitors',
  limitWarning: () => 'limitWarning',
  videoConfig: () => 'videoConfig',
};
// Overlays of the moment, not state: not replayed.
const TRANSIENT = new Set(['toolRefused', 'audioUnavailable', 'signedOut']);

function openTab(channel, target, name) {
  const tab = { channel, target, name, id: null, log: [], unseen: 0, unread: 0, lost: false, closed: false };
  tabs.push(tab);
  shownTab = tab;
  renderTabs();
  return tab;
}

// Keeps `e` in the tab's log, with when it came (the countdown's time left runs on).
function remember(tab, e) {
  if (TRANSIENT.has(e.type)) return;
  const key = LATEST[e.type] && LATEST[e.type](e);
  if (key) {
    const i = tab.log.findIndex((x) => x.key === key);
    if (i >= 0) {
      tab.log[i] = { e, at: performance.now(), key };
      return;
    }
  }
  tab.log.push({ e, at: performance.now(), key });
}

// An event of `tab`'s session: kept, and true when the shown tab is to act on it now. Behind
// another tab, an end closes the tab with a notice, a loss marks it, a chat line counts as unread.
function tabHears(tab, e) {
  if (tab.closed) return false;
  remember(tab, e);
  if (e.type === 'lost') tab.lost = true;
  if (e.type === 'signedOut') return true;
  if (e.type === 'ended') {
    const behind = tab !== shownTab;
    dropTab(tab);
    if (tab.id) invoke('close_tab', { tab: tab.id }).catch(() => {});
    if (!behind) return true;
    notice('Session ended', `${tab.name}: ${ENDED[e.reason] || 'The session ended.'}`, e.message ? `${e.message} (${e.reason})` : e.reason, 'info');
    return false;
  }
  if (tab === shownTab) return true;
  if (e.type === 'chat') tab.unseen++;
  renderTabs();
  return false;
}

function dropTab(tab) {
  tab.closed = true;
  const i = tabs.indexOf(tab);
  if (i >= 0) tabs.splice(i, 1);
  if (shownTab === tab) shownTab = null;
  renderTabs();
}

function clearTabs() {
  for (const tab of [...tabs]) dropTab(tab);
}

// Shows `tab`: the app draws its session, and the page is rebuilt from its events.
async function switchTo(tab) {
  if (tab === shownTab && !$('session-view').classList.contains('hidden')) return;
  if (!tab.id) return;
  if (shownTab) shownTab.unread = unreadChat;
  await invoke('select_tab', { tab: tab.id });
  clearInterval(refreshTimer);
  hideNotice();
  shownTab = tab;
  current = tab.channel;
  session = tab.channel;
  blankSession(tab.name, tab.target);
  const now = performance.now();
  replaying = true;
  try {
    for (const { e, at } of tab.log) {
      event(e.type === 'limitWarning' ? { ...e, timeLeftMs: Math.max(0, e.timeLeftMs - (now - at)) } : e);
    }
  } finally {
    replaying = false;
  }
  unreadChat = tab.unread + tab.unseen;
  tab.unseen = 0;
  renderChatButton();
  canvas.classList.toggle('hidden', native);
  show('session-view');
  applyScale();
  sendArea();
  renderTabs();
  $('stage').focus();
}

// The device list, with the sessions going on in their tabs.
async function showDevices() {
  if (shownTab) shownTab.unread = unreadChat;
  setFullscreen(false).catch(() => {});
  shownTab = null;
  current = null;
  session = null;
  clearInterval(countdown);
  resetDecoder();
  sendArea();
  await invoke('select_tab', { tab: null }).catch(() => {});
  hideNotice();
  renderTabs();
  await loadDevices().catch(failure);
}

// Closing a tab ends its session (the relay ends it as the technician's leave).
async function closeTab(tab) {
  const wasShown = tab === shownTab;
  dropTab(tab);
  if (tab.id) await invoke('close_tab', { tab: tab.id }).catch(failure);
  if (wasShown) {
    current = null;
    session = null;
    clearInterval(countdown);
    resetDecoder();
    setFullscreen(false).catch(() => {});
    sendArea();
    await loadDevices().catch(failure);
  }
}

// The strip: "Devices", then a tab per session with its marks (unread chat lines, lost) and a
// button that ends it. Hidden while there is no session.
function renderTabs() {
  const strip = $('tabs');
  strip.classList.toggle('hidden', tabs.length === 0);
  $('tab-devices').setAttribute('aria-selected', String(!shownTab));
  for (const el of [...strip.querySelectorAll('.session-tab')]) el.remove();
  for (const tab of tabs) {
    const el = document.createElement('span');
    el.className = 'session-tab' + (tab === shownTab ? ' shown' : '') + (tab.lost ? ' lost' : '');
    const b = document.createElement('button');
    b.setAttribute('role', 'tab');
    b.setAttribute('aria-selected', String(tab === shownTab));
    b.dataset.tab = tab.id || '';
    const marks = (tab.lost ? ' · connection lost' : '') + (tab.unseen ? ` (${tab.unseen})` : '');
    b.textContent = tab.name + marks;
    b.title = tab.lost ? `${tab.name}: the connection was lost` : tab.name;
    b.onclick = () => switchTo(tab).catch(failure);
    const x = document.createElement('button');
    x.className = 'close';
    x.textContent = '×';
    x.setAttribute('aria-label', `End the session with ${tab.name} and close its tab`);
    x.title = `End the session with ${tab.name}`;
    x.onclick = () => closeTab(tab);
    el.append(b, x);
    strip.appendChild(el);
  }
}

$('tab-devices').onclick = () => showDevices().catch(failure);

// Everything is loaded: the sign-in page.
start().catch(failure);
