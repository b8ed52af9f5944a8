// Kerbside demo dashboard: district outlines, clusters and tickets from our own vector
// tiles, and the /v1/stats figures. No external tiles, fonts or scripts unless a basemap
// style is configured (KERBSIDE_MAP_BASEMAP_STYLE_URL, served in /maps/config.json).
"use strict";

// One colour per kind of mark, told apart also by shape: clusters are blue discs with
// their count, open tickets red dots, finished ones green, dismissed ones grey rings.
const CLUSTER_COLOUR = "#3b5ba5";
const TICKET_COLOUR = "#d1495b";
const DONE_COLOUR = "#3a7d44";
const DISMISSED_COLOUR = "#8c8c8c";
const BACKGROUND = "#f4f1ea";
const DONE_STATUSES = ["fixed", "closed"];
const DISMISSED_STATUSES = ["not_our_responsibility", "rejected", "duplicate"];

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function row(table, label, value) {
  const tr = table.insertRow();
  tr.insertCell().textContent = label;
  const cell = tr.insertCell();
  cell.textContent = value;
  cell.className = "n";
}

function hours(seconds) {
  return seconds == null ? "–" : (seconds / 3600).toFixed(1) + " h";
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Tickets opened and fixed per week: paired bars, a y axis with its scale, week labels.
function weeklyChart(weekly) {
  const width = 268, height = 150, left = 30, bottom = 22, top = 8;
  const plotHeight = height - bottom - top;
  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Tickets opened and fixed per week",
  });
  const top_ = Math.max(1, ...weekly.map((w) => Math.max(w.opened, w.fixed)));
  const step = Math.max(1, Math.ceil(top_ / 4));
  const scaleTop = step * Math.ceil(top_ / step);
  const y = (value) => top + plotHeight - (value / scaleTop) * plotHeight;
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: top + plotHeight, class: "axis" }));
  chart.append(svg("line", {
    x1: left, y1: top + plotHeight, x2: width, y2: top + plotHeight, class: "axis",
  }));
  for (let value = 0; value <= scaleTop; value += step) {
    chart.append(svg("line", { x1: left - 3, y1: y(value), x2: left, y2: y(value), class: "axis" }));
    chart.append(svg("text", {
      x: left - 5, y: y(value) + 3, "text-anchor": "end", class: "tick y-tick",
    }, String(value)));
  }
  const slot = (width - left - 4) / Math.max(1, weekly.length);
  const bar = Math.max(1, slot / 2 - 1);
  const labelEvery = Math.ceil(weekly.length / 4);
  weekly.forEach((w, i) => {
    const x = left + 2 + i * slot;
    for (const [value, kind, offset] of [[w.opened, "opened", 0], [w.fixed, "fixed", bar]]) {
      const rect = svg("rect", {
        x: x + offset, y: y(value), width: bar, height: top + plotHeight - y(value), class: kind,
      });
      rect.append(svg("title", {}, `week of ${w.week}: ${value} ${kind}`));
      chart.append(rect);
    }
    if (i % labelEvery === 0) {
      const day = new Date(w.week + "T00:00:00Z");
      const label = day.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
      chart.append(svg("text", {
        x: x + bar, y: height - 6, "text-anchor": "middle", class: "tick x-tick",
      }, label));
    }
  });
  return chart;
}

async function showStats(slug) {
  const stats = await getJson("/v1/stats?jurisdiction=" + encodeURIComponent(slug));
  document.getElementById("summary").textContent =
    stats.tickets.toLocaleString() + " tickets · median " + hours(stats.median_seconds_to_acknowledge) +
    " to acknowledge, " + hours(stats.median_seconds_to_fix) + " to fix · " +
    (stats.fixed_in_time_percent ?? "–") + " % fixed in time";
  const byStatus = document.getElementById("by-status");
  for (const [status, n] of Object.entries(stats.by_status)) {
    row(byStatus, status.replaceAll("_", " "), n.toLocaleString());
  }
  const byService = document.getElementById("by-service");
  for (const s of stats.by_service) row(byService, s.service_code, s.tickets.toLocaleString());
  document.getElementById("weekly").replaceChildren(weeklyChart(stats.weekly));
}

// A cluster's count as an image, made when the map first needs it (no glyph server).
function countImage(count) {
  const text = count >= 10000 ? Math.round(count / 1000) + "k" : String(count);
  const ratio = window.devicePixelRatio || 1;
  const canvas = document.createElement("canvas");
  const size = Math.ceil(12 * ratio);
  const context = canvas.getContext("2d");
  context.font = `bold ${size}px sans-serif`;
  canvas.width = Math.ceil(context.measureText(text).width + 4 * ratio);
  canvas.height = Math.ceil(size * 1.3);
  context.font = `bold ${size}px sans-serif`;
  context.fillStyle = "#ffffff";
  context.textAlign = "center";
  context.textBaseline = "middle";
  context.fillText(text, canvas.width / 2, canvas.height / 2);
  return { image: context.getImageData(0, 0, canvas.width, canvas.height), ratio };
}

function baseStyle(config) {
  if (config.basemap_style_url) return config.basemap_style_url;
  return {
    version: 8,
    sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
  };
}

async function main() {
  const wanted = new URLSearchParams(location.search).get("jurisdiction");
  const [jurisdictions, config] = await Promise.all([
    getJson("/v1/jurisdictions"),
    getJson("/maps/config.json"),
  ]);
  const place = jurisdictions.find((j) => j.slug === wanted) || jurisdictions[0];
  if (!place) {
    document.getElementById("summary").textContent = "No jurisdiction yet.";
    return;
  }
  document.getElementById("title").textContent = place.name;
  const slug = encodeURIComponent(place.slug);
  const map = new maplibregl.Map({
    container: "map",
    style: baseStyle(config),
    bounds: place.bbox,
    fitBoundsOptions: { padding: 20 },
    attributionControl: config.basemap_style_url ? {} : false,
    preserveDrawingBuffer: true, // lets a screenshot read the canvas
  });
  window.kerbsideMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.on("styleimagemissing", (event) => {
    if (!event.id.startsWith("count-")) return;
    const { image, ratio } = countImage(Number(event.id.slice(6)));
    map.addImage(event.id, image, { pixelRatio: ratio });
  });
  map.on("load", () => {
    map.addSource("areas", { type: "geojson", data: "/v1/areas.geojson?jurisdiction=" + slug });
    map.addLayer({
      id: "areas-fill", type: "fill", source: "areas",
      paint: { "fill-color": "#e8e2d2", "fill-opacity": config.basemap_style_url ? 0.25 : 0.7 },
    });
    map.addLayer({
      id: "areas-line", type: "line", source: "areas",
      paint: { "line-color": "#8a8170", "line-width": 1.2 },
    });
    map.addSource("tickets", {
      type: "vector",
      tiles: [location.origin + "/v1/tiles/{z}/{x}/{y}.mvt?jurisdiction=" + slug],
      minzoom: 0,
      maxzoom: 16,
    });
    map.addLayer({
      id: "clusters", type: "circle", source: "tickets", "source-layer": "clusters",
      paint: {
        "circle-color": CLUSTER_COLOUR,
        "circle-opacity": 0.9,
        // Area grows with the count: 1 → 9 px, 10 → 15, 100 → 26, 1,000 → 44.
        "circle-radius": [
          "interpolate", ["linear"], ["sqrt", ["get", "count"]],
          1, 9, 3.16, 15, 10, 26, 31.6, 44,
        ],
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 1.5,
      },
    });
    map.addLayer({
      id: "cluster-counts", type: "symbol", source: "tickets", "source-layer": "clusters",
      layout: {
        "icon-image": ["concat", "count-", ["to-string", ["get", "count"]]],
        "icon-allow-overlap": true,
        "icon-ignore-placement": true,
      },
    });
    const dismissed = ["in", ["get", "status"], ["literal", DISMISSED_STATUSES]];
    map.addLayer({
      id: "tickets", type: "circle", source: "tickets", "source-layer": "tickets",
      paint: {
        "circle-color": [
          "case",
          ["in", ["get", "status"], ["literal", DONE_STATUSES]], DONE_COLOUR,
          dismissed, "rgba(0,0,0,0)",
          TICKET_COLOUR,
        ],
        "circle-radius": 5,
        "circle-stroke-color": ["case", dismissed, DISMISSED_COLOUR, "#ffffff"],
        "circle-stroke-width": ["case", dismissed, 2, 1],
      },
    });
    map.on("click", "tickets", (event) => {
      const p = event.features[0].properties;
      const box = document.createElement("div");
      const link = document.createElement("a");
      link.href = "/v1/tickets/" + encodeURIComponent(p.reference);
      link.textContent = p.reference;
      box.append(link, " " + p.service_code + ", " + p.status.replaceAll("_", " "));
      new maplibregl.Popup().setLngLat(event.lngLat).setDOMContent(box).addTo(map);
    });
    map.on("click", "clusters", (event) => {
      map.easeTo({ center: event.lngLat, zoom: map.getZoom() + 2 });
    });
  });
  map.once("idle", () => { document.body.dataset.mapReady = "1"; });
  await Promise.all([showStats(place.slug), window.kerbsideTalk?.(map, slug)]);
}

main().catch((error) => {
  document.getElementById("summary").textContent = "Could not load: " + error.message;
});
