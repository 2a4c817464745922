"""Open the pipeline's report in a real headless browser (Debian's chromium) and check it.

    snakemake --report report.html && python bench/report_check.py report.html [--json OUT] [--shot PNG]

Checks, and records with the machine: the file's size (the demo's must stay under ~15 MB); every image the
report embeds (base64 data URIs, as Snakemake writes them) decodes as an image; chromium renders the page
(``--dump-dom`` after its scripts ran) and the rendered page names every category; a screenshot of the first
screen for a human to look at. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, write_json  # noqa: E402

CATEGORIES = ("The city", "Training and distillation", "Evaluation per condition", "Predictions", "Maps")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--virtual-time-budget=20000"]


def main() -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--shot", type=Path, default=Path("report_screenshot.png"))
    a = p.parse_args()
    html = a.report.read_text(errors="replace")
    images = re.findall(r"data:image/(png|jpeg|svg\+xml)(?:;[^;,\"]*)*;base64,([A-Za-z0-9+/=]+)", html)
    bad = 0
    for kind, data in images:
        try:
            if kind != "svg+xml":
                Image.open(io.BytesIO(base64.b64decode(data))).verify()
        except Exception:
            bad += 1
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    dom, shot = "", False
    if browser:
        url = a.report.resolve().as_uri()
        dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--dump-dom", url], capture_output=True, text=True,
                             timeout=180).stdout
        subprocess.run([browser, *CHROMIUM_FLAGS, "--window-size=1400,1000", f"--screenshot={a.shot.resolve()}",
                        url], capture_output=True, text=True, timeout=180)
        shot = a.shot.exists()
    result = {"machine": machine_info(), "report": str(a.report),
              "megabytes": round(a.report.stat().st_size / 2**20, 2), "embedded_images": len(images),
              "undecodable_images": bad, "browser": browser,
              "rendered_dom_chars": len(dom), "categories_rendered": {c: c in dom for c in CATEGORIES},
              "screenshot": str(a.shot) if shot else None}
    print(json.dumps(result, indent=1))
    write_json(a.json, result)
    ok = bad == 0 and len(images) > 0 and result["megabytes"] < 15 and (not browser or all(
        result["categories_rendered"].values()))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
