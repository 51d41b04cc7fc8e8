"""Killing the web server mid-study loses no answer: a real server process is killed with SIGKILL
(also while a save is in flight), restarted, and the reader carries on with the same session."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from readerstudy.reading.models import Read
from readerstudy.studies.models import AssignedCase

from .studies import make_pool, open_study_for, readers

ROOT = Path(__file__).resolve().parent.parent
FULL = {"label": "fake", "confidence": 3, "realism": 2, "anatomy": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`manage.py runserver` on the test database, started and SIGKILLed at will."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DJANGO_SECURE_COOKIES": "0"}
        if connection.vendor == "sqlite":
            self.env["DATABASE_URL"] = f"sqlite:///{connection.settings_dict['NAME']}"
        else:
            s = connection.settings_dict
            self.env["DATABASE_URL"] = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--nothreading", f"127.0.0.1:{self.port}"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_killing_the_server_mid_study_loses_no_answer():
    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2})
    (reader,) = readers(1)
    open_study_for([reader], {("CT", "2d"): 4})
    tokens = list(AssignedCase.objects.filter(assignment__reader=reader).order_by("position")
                  .values_list("token", flat=True))
    server = Server()
    server.start()
    try:
        browser = requests.Session()
        browser.get(server.url + "/accounts/login/")
        browser.post(server.url + "/accounts/login/", data={
            "username": "reader1", "password": "pw-reader1", "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
        headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Content-Type": "application/json"}

        def save(token, body):
            return browser.post(f"{server.url}/read/case/{token}/answer", data=json.dumps(body), headers=headers,
                                timeout=30)

        assert save(tokens[0], {**FULL, "submit": True, "idempotency_key": "restart-001"}).status_code == 200
        assert save(tokens[1], {"label": "real", "idempotency_key": "restart-002"}).status_code == 200
        server.kill()
        server.start()
        state = browser.get(f"{server.url}/read/case/{tokens[1]}/state", timeout=30).json()
        assert state["answer"]["label"] == "real" and state["case"]["done"] == 1

        # Kill while a submission is in flight, restart, and resend it with the same key (as the outbox does).
        body = {**FULL, "submit": True, "idempotency_key": "restart-003"}
        sender = threading.Thread(target=lambda: _ignore_errors(save, tokens[1], body))
        sender.start()
        time.sleep(0.05)
        server.kill()
        sender.join()
        server.start()
        reply = save(tokens[1], body)
        assert reply.status_code == 200
        assert save(tokens[1], body).json()["replayed"] is True
    finally:
        if server.process and server.process.poll() is None:
            server.kill()
    reads = Read.objects.filter(assigned_case__assignment__reader=reader).order_by("assigned_case__position")
    assert [(r.label, r.submitted_at is not None) for r in reads] == [("fake", True), ("fake", True)]


def _ignore_errors(save, token, body):
    try:
        save(token, body)
    except requests.RequestException:
        pass
