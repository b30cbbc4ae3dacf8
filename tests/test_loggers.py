"""loggers: wandb never waits for a network that is not there."""

from __future__ import annotations

import logging

from fer_lightning import loggers


def test_wandb_with_credentials_but_no_network_logs_offline(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(loggers, "reachable", lambda host, port: False)
    with caplog.at_level(logging.WARNING):
        logger = loggers.wandb_logger(save_dir=str(tmp_path), project="p")
    assert logger._offline
    assert [r.message for r in caplog.records if "logging offline" in r.message]


def test_an_unanswering_server_is_not_reachable():
    assert loggers.reachable("192.0.2.1", 9, timeout=0.2) is False  # TEST-NET-1, never routed
