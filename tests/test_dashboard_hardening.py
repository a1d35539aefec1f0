"""The dashboard against bad requests, hostile stores and slow launches, through the command
(``metaloop dashboard --port 0`` in a subprocess, talking to it over 127.0.0.1 only).

Every malformed request is a 4xx with a one-line JSON error and no traceback on the server's
stderr; a slow config validation does not hold up the views; artifacts are served only from
inside their evaluation's artifact folder (links resolved); a 50 MB error message makes a
small page.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from services import need_module

need_module("starlette", "the dashboard needs it (pip install 'metaloop[dashboard]')")
need_module("uvicorn", "the dashboard needs it (pip install 'metaloop[dashboard]')")

from metaloop.api import Experiment  # noqa: E402
from metaloop.records import ArtifactRow, Evaluation, Status  # noqa: E402
from metaloop.store import open_store  # noqa: E402

TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished GA run 'ga' (the evaluations 0/0 and 0/1 keep artifacts, some linking out
    of their folder) and an experiment 'big' whose one failure has a 50 MB message."""
    root = tmp_path_factory.mktemp("hard")
    url = f"sqlite:///{root / 'store.db'}"
    Experiment(
        {
            "name": "ga",
            "storage": url,
            "seed": 3,
            "optimizee": {"kind": "function", "name": "sphere", "dims": 2},
            "optimizer": {"kind": "ga", "pop_size": 6, "elitism": 2},
            "generations": 3,
            "executor": {"kind": "serial"},
        }
    ).run()
    secret = root / "secret.txt"
    secret.write_text("the secret outside the artifact folder\n")
    folder = root / "work" / "g00000" / "i00000" / "artifacts"
    folder.mkdir(parents=True)
    (folder / "ok.txt").write_text("a kept file\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder / "secret.txt").symlink_to(secret)
    (folder / "linked").symlink_to(root)
    linked_folder = root / "work" / "g00000" / "i00001"
    linked_folder.mkdir(parents=True)
    (linked_folder / "artifacts").symlink_to(root)  # the artifact folder itself is a link
    message = "Traceback (most recent call last):\n" + "y" * 50_000_000 + "\nValueError: end"
    with open_store(url) as s:
        info = s.require_experiment("ga")
        text = "text/plain"
        rows = [
            ArtifactRow(0, 0, "ok.txt", str(folder / "ok.txt"), 12, "text/plain"),
            ArtifactRow(0, 0, "passwd", str(folder / "passwd"), 10, "text/plain"),
            ArtifactRow(0, 0, "secret.txt", str(folder / "secret.txt"), 10, "text/plain"),
            ArtifactRow(0, 0, "linked/secret.txt", str(folder / "linked/secret.txt"), 10, text),
            ArtifactRow(0, 0, "up", str(folder / ".." / ".." / "secret.txt"), 10, "text/plain"),
            ArtifactRow(0, 0, "../../../secret.txt", str(secret), 10, "text/plain"),
            ArtifactRow(0, 0, "elsewhere", str(secret), 10, "text/plain"),
            ArtifactRow(0, 1, "secret.txt", str(linked_folder / "artifacts/secret.txt"), 10, text),
        ]
        s.add_artifacts(info.id, rows)
        big = s.create_experiment("big", {"optimizer": {"kind": "random"}}, 1)
        e = Evaluation(0, 0, {"x": 1.0}, Status.FAILED, None, {}, 1, message, 1.0, 2.0, "h", "w")
        s.append(big.id, e, None)
        s.set_status(big.id, "finished", "generations")
        s.flush()
    (root / "slow.py").write_text(
        "import time\ntime.sleep(6)\n\ndef evaluate(params):\n    return 0.0\n"
    )
    return {"root": root, "url": url, "secret": secret}


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int):
        self.proc, self.port = proc, port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(store: dict[str, Any]) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "metaloop", "dashboard", "--storage", store["url"], "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=store["root"],
        env={**os.environ, "METALOOP_TOKEN": TOKEN},
    )
    assert proc.stdout is not None
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    assert m, "the dashboard did not print its address"
    srv = Server(proc, int(m.group(1)))
    yield srv
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    # no request above may have made the server print a traceback or an internal error
    assert "Traceback" not in err and "internal error" not in err, err
    assert proc.returncode == 0, err


def _nested(depth: int) -> bytes:
    return b'{"action": "note", "text": ' + b"[" * depth + b"]" * depth + b"}"


ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n"
    for i in range(9)
)
EXP = "/api/experiments/ga"
EV = EXP + "/evaluations"

# (method, path, body, extra headers, expected status, a part of the error message)
BAD_REQUESTS: list[tuple[str, str, bytes | None, dict[str, str], int, str]] = [
    ("GET", f"{EV}/{HUGE}/0", None, {}, 400, "generation: expected an integer in 0.."),
    ("GET", f"{EV}/0/{HUGE}", None, {}, 400, "index: expected an integer in 0.."),
    ("GET", f"{EV}/{HUGE}/0/reports", None, {}, 400, "generation"),
    ("GET", f"{EV}/0/{HUGE}/artifact?name=x", None, {}, 400, "index"),
    ("GET", f"{EV}/-1/0", None, {}, 404, "no experiment named"),
    ("GET", f"{EV}/abc/0", None, {}, 404, "no experiment named"),
    ("GET", f"{EV}/0/1.5", None, {}, 404, "no experiment named"),
    ("GET", f"{EV}/2147483647/0", None, {}, 404, "evaluation: no generation"),
    ("GET", "/api/experiments/nope", None, {}, 404, "no experiment named 'nope'"),
    ("GET", "/api/experiments/nope/generations", None, {}, 404, "no experiment named"),
    ("GET", "/api/experiments/nope%00x/exploration", None, {}, 404, "no experiment named"),
    ("GET", "/api/experiments/%FF%FE/pareto", None, {}, 404, "no experiment named"),
    ("GET", f"{EV}?limit=abc", None, {}, 400, "limit: expected an integer"),
    ("GET", f"{EV}?limit=0", None, {}, 400, "limit: expected 1..1000"),
    ("GET", f"{EV}?limit={HUGE}{HUGE}", None, {}, 400, "limit: expected an integer"),
    ("GET", f"{EV}?offset=-5", None, {}, 400, "offset: expected 0 or more"),
    ("GET", f"{EV}?offset=1e3", None, {}, 400, "offset: expected an integer"),
    ("GET", f"{EV}?sort=nonsense", None, {}, 400, "sort: unknown column"),
    ("GET", f"{EV}?order=sideways", None, {}, 400, "order: expected"),
    ("GET", f"{EV}?generation=x", None, {}, 400, "generation: expected an integer"),
    ("GET", f"{EV}/0/0/artifact", None, {}, 404, "no artifact named ''"),
    ("GET", "/api/experiments/nope/evaluations/0/0/artifact?name=a", None, {}, 404, "nope"),
    ("GET", "/api/nothing", None, {}, 404, "not found"),
    ("GET", "/static/nothing.js", None, {}, 404, "not found"),
    ("PUT", "/api/experiments", b"{}", {"Content-Type": "application/json"}, 405, "PUT"),
    ("DELETE", EXP, None, {}, 405, "DELETE"),
    ("GET", "/api/experiments", None, {"Host": "evil.example"}, 400, "host:"),
    ("GET", "/api/experiments", None, {"Authorization": "Bearer wrong"}, 401, "unauthorized"),
    (
        "POST",
        EXP + "/control",
        _nested(100_000),
        {"Content-Type": "application/json"},
        400,
        "body: nested 100001 levels deep",
    ),
    (
        "POST",
        EXP + "/control",
        b'{"action": "pause"}',
        {"Content-Type": "text/plain"},
        415,
        "Content-Type application/json",
    ),
    ("POST", EXP + "/control", b'{"action": "pause"}', {}, 415, "got none"),
    (
        "POST",
        EXP + "/control",
        b"[1, 2]",
        {"Content-Type": "application/json"},
        400,
        "expected a JSON object, got list",
    ),
    (
        "POST",
        EXP + "/control",
        b"{bad",
        {"Content-Type": "application/json"},
        400,
        "body: not valid JSON",
    ),
    (
        "POST",
        EXP + "/control",
        b'{"action": "set", "params": {"x": NaN}}',
        {"Content-Type": "application/json"},
        400,
        "NaN is not a JSON number",
    ),
    (
        "POST",
        EXP + "/control",
        b'{"action": "set", "params": {"x": 1e999}}',
        {"Content-Type": "application/json"},
        400,
        "number out of range",
    ),
    (
        "POST",
        EXP + "/control",
        b'{"action": "note", "text": "\xff\xfe"}',
        {"Content-Type": "application/json"},
        400,
        "body: not valid JSON",
    ),
    (
        "POST",
        EXP + "/control",
        b'{"x": ' + b"1" * 5000 + b"}",
        {"Content-Type": "application/json"},
        400,
        "body: not valid JSON",
    ),
    (
        "POST",
        "/api/experiments/nope/control",
        b'{"action": "pause"}',
        {"Content-Type": "application/json"},
        404,
        "no experiment named",
    ),
    (
        "POST",
        "/api/experiments",
        b"{" + b" " * 2_000_000 + b"}",
        {"Content-Type": "application/json"},
        413,
        "body: larger than",
    ),
    (
        "POST",
        "/api/experiments",
        json.dumps({"config": ALIAS_BOMB}).encode(),
        {"Content-Type": "application/json"},
        400,
        "alias bomb",
    ),
    (
        "POST",
        "/api/experiments",
        json.dumps({"config": "a: " + "[" * 5000 + "]" * 5000}).encode(),
        {"Content-Type": "application/json"},
        400,
        "config: nested deeper than 64",
    ),
    (
        "POST",
        "/api/experiments",
        json.dumps({"config": 17}).encode(),
        {"Content-Type": "application/json"},
        400,
        "config: expected YAML or JSON text",
    ),
    (
        "POST",
        "/api/experiments",
        b'{"nothing": 1}',
        {"Content-Type": "application/json"},
        400,
        "config: required key",
    ),
]


@pytest.mark.parametrize(
    "method, path, body, headers, status, message",
    BAD_REQUESTS,
    ids=[f"{i:02d}-{r[0]}-{r[4]}" for i, r in enumerate(BAD_REQUESTS)],
)
def test_bad_requests_are_4xx_with_a_json_error(
    server: Server,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    t0 = time.monotonic()
    code, head, raw = server.request(method, path, body, {**AUTH, **headers})
    assert code == status, raw[:300]
    assert head["content-type"].startswith("application/json")
    error = json.loads(raw)["error"]
    assert isinstance(error, str) and message in error, error
    assert "\n" not in error and len(error) < 1000
    assert time.monotonic() - t0 < 10  # an alias bomb or a deep body is refused quickly


def test_enough_distinct_bad_requests() -> None:
    assert len({(m, p, b, tuple(h.items())) for m, p, b, h, _, _ in BAD_REQUESTS}) >= 20


def test_artifacts_only_from_inside_their_folder(server: Server, store: dict[str, Any]) -> None:
    base = f"{EV}/0/0/artifact?name="
    code, _, raw = server.request("GET", base + "ok.txt", headers=AUTH)
    assert code == 200 and raw == b"a kept file\n"
    secret = store["secret"].read_bytes()
    for name, path in [
        ("passwd", base + "passwd"),  # a link to /etc/passwd
        ("secret.txt", base + "secret.txt"),  # a link out of the folder
        ("linked/secret.txt", base + "linked/secret.txt"),  # through a linked sub-folder
        ("up", base + "up"),  # a stored path with '..'
        ("../../../secret.txt", base + "../../../secret.txt"),  # a name with '..'
        ("elsewhere", base + "elsewhere"),  # a stored path outside any artifact folder
        ("linked folder", f"{EV}/0/1/artifact?name=secret.txt"),  # the folder is a link
    ]:
        code, head, raw = server.request("GET", path, headers=AUTH)
        assert code == 404, name
        assert head["content-type"].startswith("application/json"), name
        assert secret not in raw and b"root:" not in raw, name


def test_a_huge_error_message_makes_a_small_page(server: Server) -> None:
    code, _, raw = server.request("GET", "/api/experiments/big/evaluations/0/0", headers=AUTH)
    assert code == 200 and len(raw) < 100_000
    error = json.loads(raw)["error"]
    assert error.startswith("Traceback") and error.endswith("ValueError: end")
    assert "characters not shown (50,000,051 in all)" in error
    code, _, raw = server.request("GET", "/api/experiments/big/evaluations", headers=AUTH)
    assert code == 200 and len(raw) < 10_000
    assert len(json.loads(raw)["rows"][0]["error"]) <= 1024 + 20


def test_a_slow_validation_does_not_hold_up_the_views(
    server: Server, store: dict[str, Any]
) -> None:
    """The optimizee module sleeps 6 s at import; validating a config that names it runs
    beside the views: the experiment list answers within a second meanwhile."""
    config = {
        "name": "slow",
        "optimizee": {"kind": "python", "target": f"{store['root'] / 'slow.py'}:missing"},
        "optimizer": {"kind": "random", "pop_size": 2},
        "generations": 1,
    }
    answer: dict[str, Any] = {}

    def launch() -> None:
        body = json.dumps({"config": config}).encode()
        answer["status"], _, raw = server.request(
            "POST", "/api/experiments", body, JSON_AUTH, timeout=120
        )
        answer["body"] = json.loads(raw)

    t = threading.Thread(target=launch)
    t0 = time.monotonic()
    t.start()
    time.sleep(1.0)  # the validation is importing the optimizee now
    waits = []
    for _ in range(3):
        t1 = time.monotonic()
        code, _, raw = server.request("GET", "/api/experiments", headers=AUTH)
        waits.append(time.monotonic() - t1)
        assert code == 200 and "ga" in {e["name"] for e in json.loads(raw)["experiments"]}
        time.sleep(0.5)
    assert t.is_alive()  # the validation was still running while the list answered
    t.join(timeout=120)
    assert max(waits) < 1.0, waits
    assert time.monotonic() - t0 >= 6.0
    assert answer["status"] == 400, answer
    assert "missing" in answer["body"]["error"], answer


# -- the token ---------------------------------------------------------------------------------
def _start(args: list[str], cwd: Any, env: dict[str, str] | None = None) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "metaloop", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "METALOOP_TOKEN": "", **(env or {})},
    )


def test_token_file(store: dict[str, Any], tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    proc = _start(["--storage", store["url"], "--token-file", str(path)], tmp_path)
    try:
        assert proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert m
        line = proc.stdout.readline()
        assert line.startswith("token: the one given by --token-file") and TOKEN not in line
        srv = Server(proc, int(m.group(1)))
        code, _, raw = srv.request("GET", "/api/info", headers=AUTH)
        assert code == 200 and json.loads(raw)["authorized"] is True
        assert srv.request("GET", "/api/experiments")[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert err.strip() == "metaloop dashboard stopped", err  # no warning for a token file


@pytest.mark.parametrize(
    "mode, content, message",
    [
        (0o644, TOKEN, "is readable or writable by other users (mode 0644); run: chmod 600"),
        (0o620, TOKEN, "is readable or writable by other users (mode 0620)"),
        (0o600, "short", "--token-file: the token must have at least 16 characters (got 5)"),
        (0o600, "\n\n", "is empty"),
    ],
)
def test_token_file_refused(tmp_path: Any, mode: int, content: str, message: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    proc = _start(["--token-file", str(path)], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert err.startswith("metaloop: error: --token-file: ") and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_token_file_missing_or_with_token(tmp_path: Any) -> None:
    proc = _start(["--token-file", str(tmp_path / "none")], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--token-file: cannot read" in err, err
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0o600)
    proc = _start(["--token-file", str(path), "--token", TOKEN], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "give one of them, not both" in err, err


def test_token_option_warns_about_ps(store: dict[str, Any], tmp_path: Any) -> None:
    proc = _start(["--storage", store["url"], "--token", TOKEN], tmp_path)
    try:
        assert proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert m
        assert Server(proc, int(m.group(1))).request("GET", "/api/info")[0] == 200  # up
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    first = err.splitlines()[0]
    assert first.startswith("warning: --token is visible to every user of this machine (ps")
    assert "--token-file" in first and "METALOOP_TOKEN" in first


@pytest.mark.parametrize(
    "host, public, expected",
    [
        ("127.0.0.1", True, []),
        ("0.0.0.0", False, ["reachable from other machines"]),
        ("0.0.0.0", True, ["reachable from other machines", "the Host header check is off"]),
        ("10.1.2.3", True, ["reachable from other machines", "accepts only 10.1.2.3"]),
    ],
)
def test_public_read_warning(
    capsys: pytest.CaptureFixture[str], host: str, public: bool, expected: list[str]
) -> None:
    """What the dashboard says at start for each address (no socket is opened here)."""
    import argparse

    from metaloop.dashboard.command import _announce

    args = argparse.Namespace(host=host, public_read=public)
    _announce(args, 8765, TOKEN, "environment", "sqlite:///s.db", False)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == len(expected)
    for line, part in zip(warnings, expected, strict=True):
        assert line.startswith("warning: ") and part in line, line
    if public and expected:
        line = warnings[-1]
        assert line.startswith(f"warning: --public-read on {host}: anyone who can reach")
        assert "without a token, every experiment of sqlite:///s.db" in line
        for what in ("configs", "parameters", "fitness", "errors", "logs", "artifacts"):
            assert what in line


# -- the expected total: one rule ------------------------------------------------------------
def test_expected_total_rule() -> None:
    from metaloop.records import ExperimentStatus
    from metaloop.store import ExperimentInfo
    from metaloop.store.info import expected_total

    ga = {"optimizer": {"kind": "ga", "pop_size": 10, "elitism": 3}, "generations": 5}
    assert expected_total(ga) == 10 + 4 * 7
    assert expected_total({**ga, "budget": 30}) == 30
    assert expected_total(ga, pop=20, done_before=17, current=2) == 17 + 3 * 17  # steered
    assert expected_total(ga, done_before=17, current=2, current_size=5) == 17 + 5 + 2 * 7
    assert expected_total(ga, done_before=38, current=5) == 38  # past the last generation
    plain = {"optimizer": {"kind": "random", "pop_size": 10}, "generations": 5}
    assert expected_total(plain) == 50
    assert expected_total({**plain, "mode": "vectorized"}) == 50
    assert expected_total({**ga, "mode": "async"}) == 50  # results, no elites
    assert expected_total({"optimizer": {"kind": "cmaes"}, "generations": 5}) is None
    over = {"optimizer": {"pop_size": 4, "elitism": 9}, "generations": 3}
    assert expected_total(over) == 4 + 2 * 1  # at least one new candidate a generation

    def info(n: int, status: ExperimentStatus) -> ExperimentInfo:
        return ExperimentInfo(1, "x", ga, 1, status, None, 0.0, 0.0, "h", 1, n, 0, 3)

    assert info(19, ExperimentStatus.RUNNING).progress == 0.5
    assert info(24, ExperimentStatus.STOPPED).progress == round(24 / 38, 4)
    assert info(24, ExperimentStatus.FINISHED).progress == 1.0


def test_cli_status_progress_and_dashboard_agree(store: dict[str, Any], server: Server) -> None:
    """The GA 'ga' (pop 6, elitism 2, 3 generations) made 6 + 2 * 4 evaluations: the total
    the dashboard shows; ``metaloop status`` and the list say 100 %."""
    code, _, raw = server.request("GET", "/api/experiments/ga", headers=AUTH)
    summary = json.loads(raw)
    assert code == 200 and summary["evaluations"] == summary["total"] == 14
    assert summary["remaining"] == 0 and summary["progress"] == 1.0
    out = subprocess.run(
        [sys.executable, "-m", "metaloop", "status", "--storage", store["url"], "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["ga"]["progress"] == 1.0 and rows["ga"]["evaluations"] == 14


def test_run_progress_line_counts_elites_once(tmp_path: Any) -> None:
    """``metaloop run`` (not on a terminal) prints its progress with the same total."""
    config = tmp_path / "ga.yaml"
    config.write_text(
        "name: ga\noptimizee: {kind: function, name: sphere, dims: 2}\n"
        "optimizer: {kind: ga, pop_size: 10, elitism: 3}\ngenerations: 5\n"
        "executor: {kind: serial}\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "metaloop",
            "run",
            str(config),
            "--storage",
            f"sqlite:///{tmp_path / 's.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("[ga] generation")]
    assert lines and all("/38 " in ln for ln in lines), lines
    assert "evaluations 38/38" in lines[-1]
