// The sandbox inbox's only script: live figures and chart from a short poll once a second, the live part of
// the page fetched again when the poll says the messages changed, and the fault and settings controls.
"use strict";

const UI = document.body.dataset.ui;
const samples = [];
let refreshing = null;
let refreshAgain = false;

function setText(id, value) {
  const node = document.getElementById(id);
  if (node) node.textContent = value;
}

function localTimes(root) {
  for (const node of root.querySelectorAll("time[data-epoch]")) {
    const date = new Date(Number(node.dataset.epoch) * 1000);
    node.textContent = date.toLocaleTimeString();
    node.title = date.toISOString();
  }
}

async function refreshLive() {
  const live = document.getElementById("live");
  if (!live) return;
  if (refreshing) {
    refreshAgain = true; // what changed during this fetch may not be in its answer
    return refreshing;
  }
  const url = new URL(window.location.href);
  url.searchParams.set("part", "live");
  refreshing = fetch(url, { headers: { accept: "text/html" }, cache: "no-store" })
    .then((reply) => (reply.ok ? reply.text() : Promise.reject(reply.status)))
    .then((html) => {
      live.innerHTML = html;
      localTimes(live);
    })
    .catch(() => {})
    .finally(() => {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refreshLive();
      }
    });
  return refreshing;
}

function drawChart(cap) {
  const svg = document.getElementById("chart");
  if (!svg) return;
  const top = Math.max(cap, ...samples, 1) * 1.1;
  const x = (i) => (300 * i) / 59;
  const y = (v) => 90 - (90 * v) / top;
  const start = 60 - samples.length;
  const points = samples.map((v, i) => `${x(start + i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  svg.innerHTML =
    `<line class="cap" x1="0" x2="300" y1="${y(cap)}" y2="${y(cap)}"></line>` +
    `<polyline class="rate" points="${points}"></polyline>`;
}

function onTick(figures) {
  for (const name of ["total", "sending", "delivered", "failed", "throttled", "rate", "cap"]) {
    setText(`fig-${name}`, Math.round(figures[name]).toLocaleString());
  }
  samples.push(figures.rate);
  if (samples.length > 60) samples.shift();
  drawChart(figures.cap);
  if (figures.changed) refreshLive();
}

// A short poll once a second (every five while the tab is hidden): no connection is held open, so any number
// of tabs stay live. The cursor says what this page has seen; the answer says whether anything changed since.
const POLL_MS = 1000;
const HIDDEN_POLL_MS = 5000;
let cursor = "";
let nextPoll = null;

async function poll() {
  clearTimeout(nextPoll);
  const state = document.getElementById("stream-state");
  try {
    const reply = await fetch(`${UI}/changes?since=${encodeURIComponent(cursor)}`, {
      headers: { accept: "application/json" },
      cache: "no-store",
    });
    if (!reply.ok) throw new Error(String(reply.status));
    const figures = await reply.json();
    cursor = figures.cursor;
    state.className = "stream on";
    state.title = "live";
    onTick(figures);
  } catch (error) {
    state.className = "stream off";
    state.title = "reconnecting";
  }
  nextPoll = setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
}

function listen() {
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  poll();
}

async function call(method, path, body) {
  const reply = await fetch(path, {
    method,
    headers: { "content-type": "application/json", accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await reply.json();
  if (!reply.ok) throw new Error(answer.detail || reply.statusText);
  return answer;
}

function say(text, failed) {
  const status = document.getElementById("control-status");
  status.textContent = text;
  status.className = failed ? "error" : "";
}

function showSettings(settings) {
  for (const input of document.querySelectorAll("[data-setting]")) {
    input.value = settings[input.dataset.setting];
  }
  for (const input of document.querySelectorAll("[data-fault]")) {
    input.value = settings.faults[input.dataset.fault];
  }
  document.getElementById("throttle-all").checked = settings.faults.throttle >= 1;
}

async function loadSettings() {
  try {
    showSettings(await call("GET", "/_emulator/settings"));
  } catch (error) {
    say(`could not read the settings: ${error.message}`, true);
  }
}

// A page that opens the inbox in a window and gets a click on it a moment later (double-clickjacking) never
// frames it: a change in the first half second after the page is shown or focused is not applied.
let shownAt = performance.now();
const justShown = () => { shownAt = performance.now(); };
window.addEventListener("focus", justShown);
document.addEventListener("visibilitychange", justShown);
const SETTLE_MS = 500;

async function change(kind, name, value) {
  if (performance.now() - shownAt < SETTLE_MS) {
    say(`${name}: not changed (the page had only just been shown); try again`, true);
    loadSettings();
    return;
  }
  const path = kind === "fault" ? "/_emulator/faults" : "/_emulator/settings";
  try {
    await call("PATCH", path, { [name]: Number(value) });
    showSettings(await call("GET", "/_emulator/settings"));
    say(`${name} is now ${value}`, false);
  } catch (error) {
    say(`${name}: ${error.message}`, true);
    loadSettings();
  }
}

// Framed by a page of another origin (Airflow's UI embeds the inbox), the controls stay off: a page that
// frames the inbox must not lure a click into switching faults or clearing it (clickjacking).
function framedByAnotherOrigin() {
  if (window.top === window.self) return false;
  try {
    return window.top.location.origin !== window.location.origin;
  } catch (error) {
    return true;
  }
}

function controlsOff(panel) {
  for (const control of panel.querySelectorAll("input, button")) control.disabled = true;
  const note = document.getElementById("control-status");
  note.textContent = "Embedded in another page: ";
  const own = document.createElement("a");
  own.href = window.location.href;
  own.target = "_blank";
  own.rel = "noopener";
  own.textContent = "open the sandbox in its own tab to change these";
  note.append(own);
}

function wireControls() {
  const panel = document.getElementById("controls");
  if (!panel) return;
  if (framedByAnotherOrigin()) {
    controlsOff(panel);
    loadSettings(); // shown, read-only
    return;
  }
  for (const input of document.querySelectorAll("[data-fault], [data-setting]")) {
    const kind = input.dataset.fault ? "fault" : "setting";
    input.addEventListener("change", () => change(kind, input.dataset.fault || input.dataset.setting, input.value));
  }
  document.getElementById("throttle-all").addEventListener("change", (event) =>
    change("fault", "throttle", event.target.checked ? 1 : 0));
  document.getElementById("clear").addEventListener("click", async () => {
    if (!window.confirm("Delete every message in the sandbox inbox?")) return;
    try {
      const answer = await call("DELETE", "/_emulator/messages");
      say(`cleared ${answer.deleted} messages`, false);
      refreshLive();
    } catch (error) {
      say(`could not clear: ${error.message}`, true);
    }
  });
  loadSettings();
}

localTimes(document);
wireControls();
listen();
