"""The report's stylesheet, inlined into every page.

Colours are the Okabe-Ito palette, chosen to stay distinct under the common colour
blindnesses: reference blue ``#0072B2``, current orange ``#E69F00``, the KS distance
black, drift vermillion ``#D55E00``, no drift bluish green ``#009E73`` (badges also say
it in words). The layout is a side list of features beside the report on a wide
screen, one column on a phone; ``content-visibility`` lets the browser skip laying out
the features off screen, which keeps a 100-feature page quick to open.
"""

from __future__ import annotations

__all__ = ["STYLESHEET"]

STYLESHEET = """
:root{--ref:#0072B2;--cur:#E69F00;--drift:#D55E00;--ok:#009E73;--ink:#1a1a1a;--mute:#5a5a5a;
--line:#d0d0d0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink)}
body{margin:0;line-height:1.4;background:#fff}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px;z-index:2}
.layout{display:grid;grid-template-columns:15rem minmax(0,1fr)}
nav{position:sticky;top:0;height:100vh;overflow:auto;border-right:1px solid var(--line);
padding:0 .5rem;box-sizing:border-box}
nav h2{font-size:1rem}nav ol{list-style:none;margin:0;padding:0}
nav a{display:flex;justify-content:space-between;gap:.4rem;padding:.2rem .3rem;
color:var(--ink);text-decoration:none;border-radius:3px;overflow-wrap:anywhere}
nav a:hover,nav a:focus{background:#eef4fa}
a:focus,article:focus,section:focus{outline:3px solid var(--ref);outline-offset:2px}
main{padding:0 1rem 2rem;min-width:0}
h1{font-size:1.5rem}h3{font-size:1.15rem;margin:.2rem 0 .5rem;overflow-wrap:anywhere}
.badge{font-size:.75rem;font-weight:600;padding:.05rem .4rem;border-radius:.6rem;
color:#fff;white-space:nowrap;align-self:center}
.badge.drift{background:var(--drift)}.badge.ok{background:var(--ok)}
.kind{font-size:.8rem;color:var(--mute);font-weight:normal}
.verdict{font-size:1.1rem;padding:.5rem .7rem;border-left:6px solid var(--ok);background:#f3faf7}
.verdict.drift{border-color:var(--drift);background:#fdf3ee}
.legend .swatch{display:inline-block;width:1.5em;height:.8em;margin:0 .3em 0 .8em;
vertical-align:middle}
.swatch.ref{background:var(--ref);opacity:.45}.swatch.cur{border-top:3px solid var(--cur);height:0}
.swatch.ks{border-left:3px solid #000;width:0}
article{border-top:1px solid var(--line);padding:.8rem 0;content-visibility:auto;
contain-intrinsic-size:auto 720px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:.5rem}
figure{margin:0}figcaption{font-size:.8rem;color:var(--mute);text-align:center}
svg.plot{width:100%;height:auto;display:block}
svg text{font-size:10px;fill:var(--mute)}
.axis{fill:none;stroke:#888;stroke-width:1}
.ref{fill:var(--ref)}.cur{fill:var(--cur)}
.area{fill-opacity:.45}.line{fill:none;stroke-width:2}
path.ref.area{stroke:none}.ref.line{stroke:var(--ref)}.cur.line{stroke:var(--cur)}
polyline.cur.line{stroke-dasharray:5 3}
rect.cur{stroke:#8a5d00;stroke-width:.6}
.ks{stroke:#000;stroke-width:2.5;fill:none}svg text.ks-label{fill:#000;font-weight:600;
paint-order:stroke;stroke:#fff;stroke-width:3px}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start;gap:1rem;margin-top:.5rem}
table{border-collapse:collapse;font-size:.85rem}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{padding:.15rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td{font-variant-numeric:tabular-nums}
.note{color:var(--mute)}
.wide{max-width:100%;overflow-x:auto}.ci{white-space:nowrap}
@media print{article{content-visibility:visible}nav{display:none}.layout{display:block}}
@media (max-width:800px){.layout{display:block}
nav{position:static;height:auto;max-height:40vh;border-right:0;border-bottom:1px solid var(--line)}
main{padding:0 .6rem 2rem}.tables{display:block}table{margin-bottom:.6rem}}
""".strip()
