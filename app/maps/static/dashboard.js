// Kerbside demo dashboard: district outlines, clusters and tickets from our own vector
// tiles, and the /v1/stats figures. No external tiles, fonts or scripts.
"use strict";

const TICKET_COLOUR = "#d1495b";
const DONE_COLOUR = "#3a7d44";
const BACKGROUND = "#f4f1ea";

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

async function showStats(slug) {
  const stats = await getJson("/v1/stats?jurisdiction=" + encodeURIComponent(slug));
  document.getElementById("summary").textContent =
    stats.tickets.toLocaleString() + " tickets · median " + hours(stats.median_seconds_to_acknowledge) +
    " to acknowledge, " + hours(stats.median_seconds_to_fix) + " to fix · " +
    (stats.fixed_in_time_percent ?? "–") + " % fixed in time";
  const byStatus = document.getElementById("by-status");
  for (const [status, n] of Object.entries(stats.by_status)) row(byStatus, status, n.toLocaleString());
  const byService = document.getElementById("by-service");
  for (const s of stats.by_service) row(byService, s.service_code, s.tickets.toLocaleString());
  const weekly = document.getElementById("weekly");
  const top = Math.max(1, ...stats.weekly.map((w) => w.opened));
  for (const w of stats.weekly) {
    const bar = document.createElement("div");
    bar.style.height = Math.round((w.opened / top) * 100) + "%";
    bar.title = w.week + ": " + w.opened + " opened, " + w.fixed + " fixed";
    weekly.appendChild(bar);
  }
}

async function main() {
  const wanted = new URLSearchParams(location.search).get("jurisdiction");
  const jurisdictions = await getJson("/v1/jurisdictions");
  const place = jurisdictions.find((j) => j.slug === wanted) || jurisdictions[0];
  if (!place) {
    document.getElementById("summary").textContent = "No jurisdiction yet.";
    return;
  }
  document.getElementById("title").textContent = place.name;
  const slug = encodeURIComponent(place.slug);
  const map = new maplibregl.Map({
    container: "map",
    style: {
      version: 8,
      sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
    },
    bounds: place.bbox,
    fitBoundsOptions: { padding: 20 },
    attributionControl: false,
    preserveDrawingBuffer: true, // lets a screenshot read the canvas
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.on("load", () => {
    map.addSource("areas", { type: "geojson", data: "/v1/areas.geojson?jurisdiction=" + slug });
    map.addLayer({
      id: "areas-fill", type: "fill", source: "areas",
      paint: { "fill-color": "#e8e2d2", "fill-opacity": 0.7 },
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
        "circle-color": TICKET_COLOUR,
        "circle-opacity": 0.85,
        "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]], 1, 4, 30, 16, 300, 28],
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 1,
      },
    });
    map.addLayer({
      id: "tickets", type: "circle", source: "tickets", "source-layer": "tickets",
      paint: {
        "circle-color": ["match", ["get", "status"], ["fixed", "closed"], DONE_COLOUR, TICKET_COLOUR],
        "circle-radius": 5,
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 1,
      },
    });
    map.on("click", "tickets", (event) => {
      const p = event.features[0].properties;
      const box = document.createElement("div");
      const link = document.createElement("a");
      link.href = "/v1/tickets/" + encodeURIComponent(p.reference);
      link.textContent = p.reference;
      box.append(link, " " + p.service_code + ", " + p.status);
      new maplibregl.Popup().setLngLat(event.lngLat).setDOMContent(box).addTo(map);
    });
  });
  map.once("idle", () => { document.body.dataset.mapReady = "1"; });
  await showStats(place.slug);
}

main().catch((error) => {
  document.getElementById("summary").textContent = "Could not load: " + error.message;
});
