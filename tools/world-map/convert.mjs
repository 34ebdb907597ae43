// Converts Natural Earth 1:110m land (TopoJSON from the npm package world-atlas 2.0.2, file
// land-110m.json) into the SVG outline the status page embeds (src/api/ui/world.svg).
//
//   npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
//   node tools/world-map/convert.mjs package/land-110m.json > src/api/ui/world.svg
//
// Projection: equirectangular, x = lon + 180, y = 90 - lat (degrees), so the page places a
// datacenter with the same two additions. Coordinates are rounded to 0.1 degree and the map
// is cut at 60 degrees south and Antarctica left out (it holds no datacenters and would take a
// third of the height). No dependencies: the TopoJSON arcs are decoded here (quantized, delta-encoded).
import { readFileSync } from "node:fs";

const topo = JSON.parse(readFileSync(process.argv[2], "utf8"));
const [sx, sy] = topo.transform.scale;
const [tx, ty] = topo.transform.translate;

// Absolute lon/lat of every arc.
const arcs = topo.arcs.map((arc) => {
  let x = 0, y = 0;
  return arc.map(([dx, dy]) => {
    x += dx; y += dy;
    return [x * sx + tx, y * sy + ty];
  });
});

// A ring is a list of arc indices; ~i means arc i reversed. Consecutive arcs share an end point.
function ring(indices) {
  const pts = [];
  for (const i of indices) {
    const a = i < 0 ? arcs[~i].slice().reverse() : arcs[i];
    pts.push(...(pts.length ? a.slice(1) : a));
  }
  return pts;
}

const r1 = (v) => Math.round(v * 10) / 10;
let d = "";
function addRing(pts) {
  if (Math.max(...pts.map((p) => p[1])) < -55) return; // Antarctica
  // Rings that cross the antimeridian (Chukotka, Fiji) jump by 360 degrees: make them
  // continuous, then draw them once more shifted by a full turn; the view box clips both.
  let shift = 0, crosses = false;
  const cont = pts.map(([lon, lat], i) => {
    if (i > 0) {
      const step = lon - pts[i - 1][0];
      if (step > 180) { shift -= 360; crosses = true; }
      if (step < -180) { shift += 360; crosses = true; }
    }
    return [lon + shift, lat];
  });
  if (!crosses) return draw(pts);
  const min = Math.min(...cont.map((p) => p[0]));
  draw(cont);
  draw(cont.map(([lon, lat]) => [lon + (min < -180 ? 360 : -360), lat]));
}

function draw(pts) {
  let prev = null, out = [];
  for (const [lon, lat] of pts) {
    const p = [r1(lon + 180), r1(90 - Math.max(lat, -60))];
    if (prev && p[0] === prev[0] && p[1] === prev[1]) continue;
    out.push(p);
    prev = p;
  }
  if (out.length < 3) return;
  d += "M" + out.map((p) => p.join(" ")).join("L") + "Z";
}

const land = topo.objects.land;
const geoms = land.type === "GeometryCollection" ? land.geometries : [land];
for (const g of geoms) {
  const polys = g.type === "Polygon" ? [g.arcs] : g.type === "MultiPolygon" ? g.arcs : [];
  for (const poly of polys) for (const r of poly) addRing(ring(r));
}

process.stdout.write(
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 150" preserveAspectRatio="none">` +
  `<!-- Land outlines: Natural Earth 1:110m (public domain), via world-atlas 2.0.2 (ISC); ` +
  `equirectangular, x = lon + 180, y = 90 - lat; made by tools/world-map/convert.mjs -->` +
  `<path fill="#d5dbe3" stroke="#aab4c0" stroke-width="0.2" d="${d}"/></svg>\n`,
);
