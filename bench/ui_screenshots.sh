#!/usr/bin/env bash
# Optional check: headless-Chromium screenshots (1600x1000) of the Dagster UI after a run.
#
#   bench/ui_screenshots.sh OUT_DIR
#
# The caller exports the instance and data settings (DAGSTER_HOME, MICROSEG_WAREHOUSE, ...),
# as for `make ui`. The script starts dagster-webserver on a free port (code location of
# pyproject.toml [tool.dagster]), waits until /server_info answers and the code location has
# loaded, saves these PNGs into OUT_DIR, then stops the server:
#   lineage.png                  global asset lineage (/asset-groups)
#   refresh_runs.png             runs of the `refresh` job
#   customer_profiles.png        overview of identity/customer_profiles (description, columns, row count)
#   customer_scores.png          overview of models/customer_scores
#   customer_scores_plots.png    its Metadata section switched to "Plots" (clicked over the
#                                DevTools protocol: the toggle has no URL)
#   check_gx_customer_profiles.png   the page of one asset check
# Exit 0 all saved; 3 Chromium missing; 4 the webserver did not come up; 5 a PNG is missing or
# smaller than UI_SHOTS_MIN_BYTES (default 60000: a blank page is ~7 KB, the loading spinner
# ~37 KB, an empty "No assets" page ~48 KB; the real pages are 85-200 KB).
#
# Dagster shows a "Join the Dagster community" pop-up over every page of a browser that has not
# dismissed it, unless the instance's dagster.yaml says `nux: {enabled: false}` or someone
# clicked Skip once. The script says when the pop-up will cover the screenshots; with
# UI_SHOTS_HIDE_NUX=1 it clicks Skip for you (Dagster's setNuxSeen mutation, which writes
# $DAGSTER_HOME/.nux/nux.yaml, exactly as the button does).
set -euo pipefail

out=${1:?usage: $0 OUT_DIR (with DAGSTER_HOME and the MICROSEG_* settings exported)}
: "${DAGSTER_HOME:?export DAGSTER_HOME (the instance whose runs the UI shows)}"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${VENV_BIN:-$repo/.venv/bin}
min_bytes=${UI_SHOTS_MIN_BYTES:-60000}
budget_ms=${UI_SHOTS_RENDER_MS:-20000}

chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z $chromium || ! -x $chromium ]]; then
    echo "ui_screenshots: Chromium not found (apt-get install chromium, or set CHROMIUM=/path)" >&2
    exit 3
fi

mkdir -p "$out" "$DAGSTER_HOME"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
location=$("$bin/python" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["tool"]["dagster"]["code_location_name"])' "$repo/pyproject.toml")

# Own process group, so stopping it also stops the code server it spawns.
cd "$repo"
setsid "$bin/dagster-webserver" -h 127.0.0.1 -p "$port" >"$out/webserver.log" 2>&1 &
server=$!
stop() {
    kill -TERM -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT

gql() {
    curl -sf "$base/graphql" -H 'content-type: application/json' -d "{\"query\": \"$1\"}"
}

echo "ui_screenshots: dagster-webserver on $base (log: $out/webserver.log)"
up=
for _ in $(seq 180); do
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    if curl -sf "$base/server_info" >/dev/null &&
        gql '{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }' |
        grep -q '"LOADED"'; then
        up=1
        break
    fi
    sleep 1
done
if [[ -z $up ]]; then
    echo "ui_screenshots: the webserver did not answer with a loaded code location; see $out/webserver.log" >&2
    exit 4
fi

if gql '{ shouldShowNux }' | grep -q '"shouldShowNux": *true'; then
    if [[ ${UI_SHOTS_HIDE_NUX:-0} == 1 ]]; then
        gql 'mutation { setNuxSeen }' >/dev/null
        echo "ui_screenshots: community pop-up dismissed (setNuxSeen: $DAGSTER_HOME/.nux/nux.yaml)"
    else
        echo "ui_screenshots: NOTE the 'Join the Dagster community' pop-up will cover the screenshots;" \
            "add 'nux: {enabled: false}' to $DAGSTER_HOME/dagster.yaml or rerun with UI_SHOTS_HIDE_NUX=1"
    fi
fi

# A fresh profile per page: what a first-time visitor sees.
shot() {
    local name=$1 path=$2
    timeout 180 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --no-first-run --user-data-dir="$work/profile-$name" --window-size=1600,1000 \
        --virtual-time-budget="$budget_ms" --screenshot="$out/$name.png" "$base$path" \
        >>"$work/chromium.log" 2>&1 || echo "ui_screenshots: chromium failed on $path" >&2
}

# The Plots toggle keeps its state in the page, not the URL: open the page over the DevTools
# protocol, click "Plots", scroll it to the top, capture.
plots_shot() {
    local name=$1 path=$2
    "$bin/python" - "$chromium" "$base$path" "$out/$name.png" "$work/profile-$name" <<'EOF' ||
import base64, itertools, json, os, subprocess, sys, time, urllib.request

from websockets.sync.client import connect

chromium, url, png, profile = sys.argv[1:5]
browser = subprocess.Popen(
    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
     f"--user-data-dir={profile}", "--window-size=1600,1000", "--remote-debugging-port=0",
     "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
try:
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(150):
        if os.path.exists(port_file) and open(port_file).read().strip():
            break
        time.sleep(0.2)
    port = open(port_file).read().split()[0]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
    page = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    with connect(page, max_size=None) as ws:
        ids = itertools.count(1)

        def call(method, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while (reply := json.loads(ws.recv())).get("id") != n:
                pass
            return reply.get("result", {})

        def js(expression):
            reply = call("Runtime.evaluate", expression=expression, returnByValue=True)
            return reply["result"].get("value")

        call("Emulation.setDeviceMetricsOverride", width=1600, height=1000,
             deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        button = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Plots')"
        deadline = time.monotonic() + 60
        while not js(f"!!{button}"):
            if time.monotonic() > deadline:
                sys.exit(f"no 'Plots' button on {url}")
            time.sleep(0.25)
        js(f"{button}.click()")
        time.sleep(1)
        js(f"{button}.scrollIntoView({{block: 'start'}})")
        time.sleep(4)  # the charts draw after the click
        data = call("Page.captureScreenshot", format="png")["data"]
        with open(png, "wb") as f:
            f.write(base64.b64decode(data))
finally:
    browser.terminate()
    browser.wait(10)
EOF
        echo "ui_screenshots: plots screenshot of $path failed" >&2
}

shot lineage /asset-groups
shot refresh_runs "/locations/$location/jobs/refresh/runs"
shot customer_profiles /assets/identity/customer_profiles
shot customer_scores /assets/models/customer_scores
plots_shot customer_scores_plots /assets/models/customer_scores
shot check_gx_customer_profiles '/assets/identity/customer_profiles?view=checks&checkDetail=gx_customer_profiles'

status=0
for name in lineage refresh_runs customer_profiles customer_scores customer_scores_plots \
    check_gx_customer_profiles; do
    size=$(stat -c %s "$out/$name.png" 2>/dev/null || echo 0)
    if ((size < min_bytes)); then
        echo "ui_screenshots: $name.png is $size bytes (< $min_bytes): blank, spinner or missing" >&2
        status=5
    else
        echo "ui_screenshots: $out/$name.png ($size bytes)"
    fi
done
exit $status
