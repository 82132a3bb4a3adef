"""Prometheus metrics for real: an HTTP server scraped over the loopback, a real mtest run.

``MetricsServer`` binds a real socket (port 0) and is scraped with urllib:
``/metrics`` parses with the strict reader of ``test_metrics``, ``/health``
follows the snapshot, a port in use is one clear error. ``mtest
--metrics-file`` runs a real suite and the file it leaves carries that run.
Where Debian's ``prometheus`` package is installed, ``promtool`` checks what
is served and a real Prometheus scrapes the server (both on the loopback).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import error_lines, run_mtest, write_suite
from test_metrics import PROMTOOL, needs_promtool, parse_exposition

from supervisor.errors import MtestError
from supervisor.metrics import CONTENT_TYPE, RESULTS, Snapshot
from supervisor.metrics_server import MetricsServer
from supervisor.result import RunResult

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0
"""Generous: the machine is shared; nothing here depends on how fast it answers."""


class Source:
    """A snapshot function whose answer the test changes (or makes raise)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot.fresh(1700000000.0)
        self.fail = False

    def __call__(self) -> Snapshot:
        if self.fail:
            raise RuntimeError("snapshot exploded")
        return self.snapshot


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def server(source: Source) -> Iterator[MetricsServer]:
    served = MetricsServer("127.0.0.1", 0, source)
    served.start()
    try:
        yield served
    finally:
        served.close()


def get(server: MetricsServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One request; the status, headers and body (an error status is an answer too)."""
    url = f"http://127.0.0.1:{server.port}{path}"
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return answer.status, dict(answer.headers), answer.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8")


def test_metrics_are_served_in_the_text_format(server: MetricsServer, source: Source) -> None:
    run = RunResult(
        exit_code=0,
        run_id="r",
        started="2024-03-01T12:00:00Z",
        ended="2024-03-01T12:00:02Z",
        wall_s=2.0,
        counts={"passed": 5},
        slowest=('t.py::test["x"]', 0.5),
    )
    source.snapshot = replace(source.snapshot.after(run), cycles_skipped_total=7)
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE
    parsed = parse_exposition(body)
    assert parsed["mtest_last_run_tests"].value(outcome="passed") == 5
    assert parsed["mtest_runs_total"].value(result="passed") == 1
    assert parsed["mtest_cycles_skipped_total"].value() == 7
    assert parsed["mtest_last_run_slowest_test_seconds"].value(test_id='t.py::test["x"]') == 0.5
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(server.url, timeout=TIMEOUT_S) as answer:
        assert answer.read().decode("utf-8") == body


def test_each_scrape_reads_a_fresh_snapshot(server: MetricsServer, source: Source) -> None:
    for skipped in (1, 2, 3):
        source.snapshot = replace(source.snapshot, cycles_skipped_total=skipped)
        parsed = parse_exposition(get(server, "/metrics")[2])
        assert parsed["mtest_cycles_skipped_total"].value() == skipped


def test_health_follows_the_snapshot(server: MetricsServer, source: Source) -> None:
    assert get(server, "/health")[::2] == (200, "ok\n")
    source.snapshot = replace(source.snapshot, healthy=False)
    status, _, body = get(server, "/health")
    assert status == 503
    assert "internal error" in body
    source.snapshot = replace(source.snapshot, healthy=True)
    assert get(server, "/health")[0] == 200


def test_other_paths_are_404_and_head_has_headers_only(server: MetricsServer) -> None:
    for path in ("/", "/metricsx", "/metrics/extra", "/favicon.ico"):
        assert get(server, path)[0] == 404, path
    assert get(server, "/metrics?format=text")[0] == 200
    status, headers, body = get(server, "/metrics", method="HEAD")
    assert (status, body) == (200, "")
    assert headers["Content-Type"] == CONTENT_TYPE
    assert int(headers["Content-Length"]) == len(get(server, "/metrics")[2].encode())
    assert get(server, "/health", method="HEAD")[::2] == (200, "")


def test_a_raising_snapshot_is_a_500_and_the_server_goes_on(
    server: MetricsServer, source: Source, capfd: pytest.CaptureFixture[str]
) -> None:
    source.fail = True
    for path in ("/metrics", "/health"):
        status, _, body = get(server, path)
        assert status == 500
        assert "RuntimeError: snapshot exploded" in body
    source.fail = False
    assert get(server, "/metrics")[0] == 200
    assert get(server, "/health")[0] == 200
    assert capfd.readouterr().err == ""  # no request log, no traceback


def test_a_client_that_stalls_or_drops_does_not_block_others(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as idle:
        idle.sendall(b"GET /met")  # half a request line, then nothing
        assert get(server, "/metrics")[0] == 200
    for _ in range(3):  # asks, then hangs up before reading the answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as rude:
            rude.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as odd:
        odd.sendall(b"BREW /metrics HTTP/1.1\r\n\r\n")
        assert odd.recv(100).startswith(b"HTTP/1.0 501")  # answered, not a dead thread
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as junk:
        junk.sendall(b"\x00\xff not http at all\r\n\r\n")
        while junk.recv(4096):  # whatever the answer, the server ends the connection
            pass
    assert get(server, "/health")[0] == 200
    assert capfd.readouterr().err == ""


def test_concurrent_scrapes_all_parse(server: MetricsServer) -> None:
    bodies: list[str] = []
    lock = threading.Lock()

    def scrape() -> None:
        body = get(server, "/metrics")[2]
        with lock:
            bodies.append(body)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert len(bodies) == 8
    for body in bodies:
        parse_exposition(body)


def test_a_port_in_use_is_one_clear_error(server: MetricsServer) -> None:
    with pytest.raises(MtestError) as caught:
        MetricsServer("127.0.0.1", server.port, Source())
    error = caught.value
    assert f"`127.0.0.1:{server.port}`" in error.message
    assert "in use" in error.message
    assert "--metrics-port" in error.hint
    assert "\n" not in error.message + error.hint


def test_an_address_not_of_this_machine_is_one_clear_error() -> None:
    with pytest.raises(MtestError) as caught:
        MetricsServer("192.0.2.1", 0, Source())  # TEST-NET-1: never local; bind fails at once
    assert "`192.0.2.1:0`" in caught.value.message
    assert "--metrics-host" in caught.value.hint


def test_close_is_idempotent_frees_the_port_and_works_unstarted(source: Source) -> None:
    served = MetricsServer("127.0.0.1", 0, source)
    served.close()  # never started: must not wait for a loop that never ran
    served.close()
    served = MetricsServer("127.0.0.1", 0, source)
    served.start()
    port = served.port
    assert get(served, "/health")[0] == 200
    served.close()
    served.close()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S).request("GET", "/")
    again = MetricsServer("127.0.0.1", port, source)  # the port is free again
    again.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="this Python has no IPv6 support")
def test_an_ipv6_host_binds_an_ipv6_socket(source: Source) -> None:
    try:
        served = MetricsServer("::1", 0, source)
    except MtestError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc.message}")
    with served:
        served.start()
        assert served.url == f"http://[::1]:{served.port}/metrics"
        with urllib.request.urlopen(served.url, timeout=TIMEOUT_S) as answer:
            parse_exposition(answer.read().decode("utf-8"))


# -- mtest --metrics-file ---------------------------------------------------------------

SUITE = {
    "test_a.py": (
        "import pytest\n\n\n"
        "def test_one():\n    pass\n\n\n"
        "def test_two():\n    pass\n\n\n"
        "def test_bad():\n    assert False\n\n\n"
        "def test_skip():\n    pytest.skip('no')\n"
    ),
}


def test_metrics_file_of_a_failing_run_carries_its_counts(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    target = tmp_path / "textfile" / "mtest.prom"
    done = run_mtest(["--metrics-file", str(target)], project, timeout=TIMEOUT_S)
    assert done.returncode == 1, done.stderr
    assert "warning" not in done.stderr
    parsed = parse_exposition(target.read_text(encoding="utf-8"))
    tests = parsed["mtest_last_run_tests"]
    assert (tests.value(outcome="passed"), tests.value(outcome="failed")) == (2, 1)
    assert tests.value(outcome="skipped") == 1
    assert tests.value(outcome="crashed") == 0
    runs = {r: parsed["mtest_runs_total"].value(result=r) for r in RESULTS}
    assert runs == {"passed": 0, "failed": 1, "interrupted": 0, "error": 0}
    assert parsed["mtest_last_run_exit_code"].value() == 1
    assert parsed["mtest_last_run_not_run_tests"].value() == 0
    assert parsed["mtest_last_run_duration_seconds"].value() > 0
    assert "mtest_last_success_timestamp_seconds" not in parsed
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["mtest.prom"]
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "metrics"],
            input=target.read_text(encoding="utf-8"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


def test_metrics_file_of_a_passing_run_sets_the_last_success(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_ok.py": "def test_ok():\n    pass\n"})
    done = run_mtest(["--metrics-file", "out.prom"], project, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    parsed = parse_exposition((project / "out.prom").read_text(encoding="utf-8"))
    assert parsed["mtest_runs_total"].value(result="passed") == 1
    ended = parsed["mtest_last_run_timestamp_seconds"].value()
    assert parsed["mtest_last_success_timestamp_seconds"].value() == ended
    assert parsed["mtest_start_time_seconds"].value() <= ended


@pytest.mark.parametrize("blocker", ["a file as the directory", "a directory as the file"])
def test_an_unwritable_metrics_file_warns_and_keeps_the_exit_code(
    tmp_path: Path, blocker: str
) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    if blocker == "a file as the directory":
        (tmp_path / "plain").write_text("")
        target = tmp_path / "plain" / "mtest.prom"
    else:
        target = tmp_path / "dir.prom"
        target.mkdir()
    done = run_mtest(["--metrics-file", str(target)], project, timeout=TIMEOUT_S)
    assert done.returncode == 1, done.stderr  # the run's own: one test failed
    assert "Traceback" not in done.stderr
    warnings = [line for line in error_lines(done.stderr) if "--metrics-file" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith("mtest: warning: cannot write --metrics-file")
    assert f"`{target}`" in warnings[0]
    assert "(hint: " in warnings[0]
    assert (project / ".gates" / "last-run" / "summary.md").exists()  # the run itself is whole


@needs_promtool
def test_promtool_reads_a_live_scrape(server: MetricsServer) -> None:
    assert PROMTOOL is not None
    body = get(server, "/metrics")[2]
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


# -- a real Prometheus, where it is installed -------------------------------------------

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
        data = json.load(answer)
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (Debian: apt-get install prometheus)"
)
def test_a_real_prometheus_scrapes_the_server(
    tmp_path: Path, server: MetricsServer, source: Source
) -> None:
    """Prometheus itself ingests a scrape: escaped labels read back, the documented queries run."""
    assert PROMETHEUS is not None
    test_id = 'tests/t.py::test_x[a"b\\c\nd]'
    run = RunResult(exit_code=1, run_id="r", started="2024-03-01T12:00:00Z",
                    ended="2024-03-01T12:00:02Z", wall_s=2.0, counts={"passed": 3, "failed": 1},
                    coverage_ratio=0.75, slowest=(test_id, 1.5))  # fmt: skip
    source.snapshot = source.snapshot.after(run)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: mtest\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    port = _free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # until Prometheus answers and has scraped the server once
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            try:
                if _query(port, 'up{job="mtest"} == 1'):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        slowest = _query(port, "mtest_last_run_slowest_test_seconds")
        assert [(s["metric"]["test_id"], s["value"][1]) for s in slowest] == [(test_id, "1.5")]
        failing = 'sum(mtest_last_run_tests{outcome=~"failed|error|hung|crashed"})'
        assert _query(port, failing)[0]["value"][1] == "1"
        rate = (
            'mtest_last_run_tests{outcome="passed"}'
            " / ignoring(outcome) sum without(outcome) (mtest_last_run_tests)"
        )
        assert _query(port, rate)[0]["value"][1] == "0.75"
        assert _query(port, "mtest_last_run_coverage_ratio * 100")[0]["value"][1] == "75"
        assert _query(port, "mtest_healthy == 0") == []
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()
