"""The ops dashboard at /ui: server-rendered pages (Jinja2, autoescaped), a little vanilla JavaScript that refreshes the
overview, inline SVG charts; every file it needs ships in this package."""
