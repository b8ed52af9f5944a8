// Talk of the town on the dashboard (staff only): spikes on the map, trend lines and the
// mood over time, from /v1/alerts and /v1/talk/*. The staff API key comes from the page's
// fragment (#key=ks_...; never sent to a server, then kept for the tab only) or the form.
"use strict";

const SPIKE_COLOUR = "#f28e2b";
const SPIKE_CLOSED_COLOUR = "#8c6d4f";
const TREND_COLOURS = ["#4e79a7", "#e15759", "#76b7b2", "#59a14f", "#b07aa1"];
const KEY_STORE = "kerbside.staffKey";

function staffKey() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("key");
  if (given) {
    sessionStorage.setItem(KEY_STORE, given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY_STORE);
}

async function staffJson(url, key) {
  const response = await fetch(url, { headers: { "X-API-Key": key } });
  if (!response.ok) throw new Error(url.split("?")[0] + ": " + response.status);
  return response.json();
}

function talkSvg(name, attributes, text) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
  if (text !== undefined) element.textContent = text;
  return element;
}

// A small line chart: one polyline per series over the same days, a y axis with its
// range, "today" marked at the right end.
function lineChart({ series, label, yMin, yMax, yFormat, width = 268, height = 120 }) {
  const left = 34, bottom = 16, top = 6, right = 4;
  const chart = talkSvg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                                  role: "img", "aria-label": label });
  const plotW = width - left - right, plotH = height - top - bottom;
  const days = Math.max(2, ...series.map((s) => s.values.length));
  const x = (i) => left + (i / (days - 1)) * plotW;
  const y = (v) => top + plotH - ((v - yMin) / (yMax - yMin || 1)) * plotH;
  chart.append(talkSvg("line", { x1: left, y1: top, x2: left, y2: top + plotH, class: "axis" }));
  chart.append(talkSvg("line", { x1: left, y1: y(Math.max(yMin, Math.min(0, yMax))),
                                  x2: width - right, y2: y(Math.max(yMin, Math.min(0, yMax))),
                                  class: "axis" }));
  for (const v of [yMin, yMax]) {
    chart.append(talkSvg("text", { x: left - 4, y: y(v) + 3, "text-anchor": "end",
                                    class: "tick y-tick" }, yFormat(v)));
  }
  chart.append(talkSvg("text", { x: left, y: height - 3, class: "tick x-tick" },
                       `${days - 1} days ago`));
  chart.append(talkSvg("text", { x: width - right, y: height - 3, "text-anchor": "end",
                                  class: "tick x-tick" }, "today"));
  series.forEach((s, n) => {
    const points = s.values.map((v, i) => v == null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)
      .filter((p) => p !== null).join(" ");
    const line = talkSvg("polyline", { points, class: "series", stroke: s.colour });
    line.append(talkSvg("title", {}, s.name));
    chart.append(line);
  });
  return chart;
}

function legend(series) {
  const box = document.createElement("p");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.colour;
    item.append(swatch, " " + s.name + " ");
    box.append(item);
  }
  return box;
}

async function showTrends(slug, key) {
  const trends = await staffJson(`/v1/talk/trends?jurisdiction=${slug}&limit=5`, key);
  const box = document.getElementById("talk-trends");
  if (!trends.items.length) {
    box.textContent = "Nothing rising today.";
    return;
  }
  const series = trends.items.map((t, i) => ({
    name: `${t.term} (${t.today} today, ${t.per_day.toFixed(1)}/day)`,
    values: t.series, colour: TREND_COLOURS[i % TREND_COLOURS.length],
  }));
  const top = Math.max(1, ...trends.items.flatMap((t) => t.series));
  box.replaceChildren(
    lineChart({ series, label: "Mentions per day of the terms rising today",
                yMin: 0, yMax: top, yFormat: (v) => String(v) }),
    legend(series),
  );
}

async function showMood(slug, key) {
  const moods = await staffJson(`/v1/talk/sentiment?jurisdiction=${slug}&days=30`, key);
  const box = document.getElementById("talk-mood");
  if (!moods.items.length) {
    box.textContent = "No texts to read yet.";
    return;
  }
  const dayMs = 86400000, now = Date.now();
  const values = new Array(31).fill(null);
  for (const m of moods.items) {
    const ago = Math.floor((now - Date.parse(m.bucket)) / dayMs);
    if (ago >= 0 && ago <= 30) values[30 - ago] = m.mean;
  }
  const series = [{ name: "mean sentiment per day (−1 angry … 1 pleased)", values,
                    colour: "#3b5ba5" }];
  box.replaceChildren(
    lineChart({ series, label: "Mean sentiment per day over 30 days", yMin: -1, yMax: 1,
                yFormat: (v) => v.toFixed(0) }),
    legend(series),
  );
}

// One line: the share of social posts due in the last 30 days answered within the city's
// response time (GET /v1/talk/answering).
async function showAnswering(slug, key) {
  const level = await staffJson(`/v1/talk/answering?jurisdiction=${slug}&days=30&bucket_days=31`,
                                key);
  const due = level.items.reduce((n, i) => n + i.posts - i.pending, 0);
  const onTime = level.items.reduce((n, i) => n + i.on_time, 0);
  document.getElementById("talk-answering").textContent = due
    ? `${Math.round((100 * onTime) / due)} % of ${due} posts due in 30 days answered within ` +
      `${level.within_hours} h`
    : "No posts due in 30 days.";
}

async function showSpikes(map, loaded, slug, key) {
  const page = await staffJson(`/v1/alerts?jurisdiction=${slug}&limit=50`, key);
  const features = page.items.map((a) => ({
    type: "Feature", geometry: a.polygon,
    properties: { id: a.id, status: a.status, service: a.service || "posts",
                  signals: a.signal_count, area: a.area_name || a.area || "" },
  }));
  const data = { type: "FeatureCollection", features };
  const add = () => {
    map.addSource("spikes", { type: "geojson", data });
    map.addLayer({ id: "spikes-fill", type: "fill", source: "spikes", paint: {
      "fill-color": ["case", ["==", ["get", "status"], "open"], SPIKE_COLOUR, SPIKE_CLOSED_COLOUR],
      "fill-opacity": ["case", ["==", ["get", "status"], "open"], 0.55, 0.2] } });
    map.addLayer({ id: "spikes-line", type: "line", source: "spikes", paint: {
      "line-color": SPIKE_COLOUR, "line-width": 2 } });
    map.on("click", "spikes-fill", (event) => {
      const p = event.features[0].properties;
      new maplibregl.Popup().setLngLat(event.lngLat)
        .setText(`Spike: ${p.signals} × ${p.service} ${p.area} (${p.status})`).addTo(map);
    });
  };
  await loaded;
  add();
  const list = document.getElementById("talk-spikes");
  list.replaceChildren();
  if (!page.items.length) list.textContent = "No spikes.";
  for (const a of page.items.slice(0, 8)) {
    const item = document.createElement("li");
    item.className = a.status;
    item.textContent = `${a.signal_count} × ${a.service || "posts"} in ${a.area_name || a.area || "?"}` +
      ` (usually ${a.expected.toFixed(1)}; ${a.status})`;
    list.append(item);
  }
}

// Called right after the map is made, before its "load" can have fired.
async function showTalk(map, slug) {
  const loaded = new Promise((resolve) => map.once("load", resolve));
  const key = staffKey();
  const section = document.getElementById("talk");
  if (!key) {
    section.dataset.state = "locked";
    return;
  }
  section.dataset.state = "open";
  try {
    await Promise.all([showSpikes(map, loaded, slug, key), showTrends(slug, key), showMood(slug, key),
                      showAnswering(slug, key)]);
    section.dataset.ready = "1";
  } catch (error) {
    document.getElementById("talk-error").textContent = "Talk: " + error.message;
  }
}

document.getElementById("talk-key")?.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = event.target.elements.key.value.trim();
  if (value) {
    sessionStorage.setItem(KEY_STORE, value);
    location.reload();
  }
});

window.kerbsideTalk = showTalk;
