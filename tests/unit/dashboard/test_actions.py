"""Dashboard actions: 405 read-only, 401 nobody, 403 without CSRF or from elsewhere."""

from __future__ import annotations

import re

import pytest

from printery.cli.main import run as cli_run
from printery.dashboard.auth import COOKIE, SESSION_S, Auth
from printery.dashboard.config import DashboardConfig, Token
from printery.errors import ConfigError
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.dashboard import add_dead_letter, dashboard_client, sign_in

TOKEN = "tok-0123456789abcdef"


async def _letters(adapter: StreamAdapter, stream: str, n: int) -> list[str]:
    return [await add_dead_letter(adapter, stream, error=f"e{i}") for i in range(n)]


async def test_read_only_answers_405_and_hides_buttons(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """Without DASHBOARD_TOKEN every action is 405, token offered or not; no button shows."""
    stream = Keys(prefix).started
    (dead_id,) = await _letters(own_fake_adapter, stream, 1)
    async with dashboard_client(own_fake_adapter, prefix) as client:
        page = await (await client.get(f"/dead/{stream}")).text()
        answers = [
            await client.post(f"/dead/{stream}/replay", data={"ids": dead_id}),
            await client.post(
                f"/dead/{stream}/purge",
                data={"all": "1"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ),
            await client.post("/signin", data={"token": TOKEN}),
        ]
    assert [405, 405, 405] == [a.status for a in answers]
    assert "GET,HEAD" == answers[0].headers["Allow"].replace(" ", "")
    assert "<button" not in page.split("</header>")[1]
    assert 1 == await own_fake_adapter.length(f"{stream}:dead")


async def test_without_credentials_is_401(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """No token, a wrong Bearer token, or a forged cookie: 401, and nothing moves."""
    stream = Keys(prefix).started
    (dead_id,) = await _letters(own_fake_adapter, stream, 1)
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        nobody = await client.post(f"/dead/{stream}/replay", data={"ids": dead_id})
        wrong = await client.post(
            f"/dead/{stream}/replay",
            data={"ids": dead_id},
            headers={"Authorization": "Bearer not-the-token"},
        )
        client.session.cookie_jar.update_cookies({COOKIE: "1.abc.deadbeef"})
        forged = await client.post(f"/dead/{stream}/purge", data={"all": "1"})
        page = await (await client.get(f"/dead/{stream}")).text()
    assert [401, 401, 401] == [nobody.status, wrong.status, forged.status]
    assert "Bearer" in nobody.headers["WWW-Authenticate"]
    assert "Sign in</a> to replay" in page
    assert 1 == await own_fake_adapter.length(f"{stream}:dead")


async def test_bearer_replays_without_csrf(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """Authorization: Bearer needs no CSRF token; the chosen dead letters go back to the stream."""
    stream = Keys(prefix).started
    ids = await _letters(own_fake_adapter, stream, 3)
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        response = await client.post(
            f"/dead/{stream}/replay",
            data={"ids": f"{ids[0]},{ids[2]}"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        body = await response.json()
    assert 200 == response.status
    assert [ids[0], ids[2]] == [r["id"] for r in body["replayed"]]
    assert [ids[1]] == [e.id for e in await own_fake_adapter.entries(f"{stream}:dead")]
    replayed = await own_fake_adapter.entries(stream)
    assert [ids[0], ids[2]] == [e.fields[b"replayed_from"].decode() for e in replayed]  # type: ignore[index]


async def test_session_needs_csrf_and_same_origin(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """A signed-in browser gets 403 without the CSRF token, a wrong one, or from elsewhere."""
    stream = Keys(prefix).started
    (dead_id,) = await _letters(own_fake_adapter, stream, 1)
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        csrf = await sign_in(client, TOKEN)
        url = f"/dead/{stream}/purge"
        missing = await client.post(url, data={"ids": dead_id})
        wrong = await client.post(url, data={"ids": dead_id, "csrf": "0" * 64})
        elsewhere = await client.post(
            url, data={"ids": dead_id, "csrf": csrf}, headers={"Origin": "http://evil.example"}
        )
        cross = await client.post(
            url, data={"ids": dead_id, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        null = await client.post(
            url, data={"ids": dead_id, "csrf": csrf}, headers={"Origin": "null"}
        )
        assert 1 == await own_fake_adapter.length(f"{stream}:dead")
        ours = await client.post(
            url,
            data={"ids": dead_id, "csrf": "0" * 64},
            headers={"Origin": f"http://{client.host}:{client.port}"},
        )
        done = await client.post(
            url,
            data={"ids": dead_id, "csrf": csrf},
            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # Chromium's own post
            allow_redirects=False,
        )
    assert [403, 403, 403, 403, 403] == [r.status for r in (missing, wrong, elsewhere, cross, null)]
    assert 403 == ours.status  # our origin, but still the wrong CSRF token
    assert 303 == done.status
    assert f"/dead/{stream}?purged=1" == done.headers["Location"]
    assert 0 == await own_fake_adapter.length(f"{stream}:dead")


async def test_form_replay_all_and_purge_all(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """all=1 replays every dead letter; all=1 on purge empties the dead letters; counts shown."""
    stream = Keys(prefix).started
    await _letters(own_fake_adapter, stream, 4)
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        csrf = await sign_in(client, TOKEN)
        replay = await client.post(f"/dead/{stream}/replay", data={"all": "1", "csrf": csrf})
        replay_page = await replay.text()
        assert 4 == await own_fake_adapter.length(stream)
        await _letters(own_fake_adapter, stream, 2)
        purge = await client.post(f"/dead/{stream}/purge", data={"all": "1", "csrf": csrf})
        purge_page = await purge.text()
    assert "Replayed 4." in replay_page
    assert "Purged 2." in purge_page
    assert 0 == await own_fake_adapter.length(f"{stream}:dead")


async def test_bad_action_forms_are_400(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """Neither ids nor all, both, or an id that is not an entry id: 400, nothing done."""
    stream = Keys(prefix).started
    await _letters(own_fake_adapter, stream, 1)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        answers = [
            await client.post(f"/dead/{stream}/replay", data={}, headers=bearer),
            await client.post(
                f"/dead/{stream}/replay", data={"all": "1", "ids": "1-0"}, headers=bearer
            ),
            await client.post(f"/dead/{stream}/purge", data={"ids": "-,+"}, headers=bearer),
        ]
    assert [400, 400, 400] == [a.status for a in answers]
    assert 1 == await own_fake_adapter.length(f"{stream}:dead")


async def test_signin_cookie_flags_and_wrong_token(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """Sign-in sets an HttpOnly SameSite=Strict cookie; a wrong token is 401 and not echoed."""
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        wrong = await client.post("/signin", data={"token": "guess-<b>", "next": "/"})
        wrong_text = await wrong.text()
        good = await client.post(
            "/signin", data={"token": TOKEN, "next": "//evil.example/x"}, allow_redirects=False
        )
    cookie = good.headers["Set-Cookie"]
    assert 401 == wrong.status
    assert "guess" not in wrong_text
    assert 303 == good.status
    assert "/" == good.headers["Location"]  # never to another host
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie


def test_session_cookie_expires_and_binds_csrf() -> None:
    """A session lasts SESSION_S; its CSRF token is its own; another process's is refused."""
    now = [1_000_000.0]
    auth = Auth(Token(TOKEN), clock=lambda: now[0])
    cookie = auth.new_session()
    sid = auth.session_id(cookie)
    assert sid is not None
    other = auth.session_id(auth.new_session())
    assert other is not None
    assert auth.csrf_for(sid) != auth.csrf_for(other)
    assert auth.session_id(Auth(Token(TOKEN)).new_session()) is None
    now[0] += SESSION_S + 1
    assert auth.session_id(cookie) is None


async def test_headers_on_every_response(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """CSP with a fresh nonce (the script's), nosniff, no-referrer, no-store, on errors too."""
    async with dashboard_client(own_fake_adapter, prefix) as client:
        answers = [
            await client.get("/"),
            await client.get("/"),
            await client.get("/streams/elsewhere"),
            await client.post(f"/dead/{prefix}:x/replay"),
            await client.get("/static/dashboard.js"),
        ]
        first = await answers[0].text()
    nonces = []
    for a in answers:
        policy = a.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert "nosniff" == a.headers["X-Content-Type-Options"]
        assert "no-referrer" == a.headers["Referrer-Policy"]
        assert "no-store" == a.headers["Cache-Control"]
        nonces.append(re.search(r"'nonce-([^']+)'", policy).group(1))  # type: ignore[union-attr]
    assert len(set(nonces)) == len(nonces)
    assert f'<script src="/static/dashboard.js" nonce="{nonces[0]}"></script>' in first
    assert 1 == first.count("<script")


async def test_token_never_shown(
    own_fake_adapter: StreamAdapter, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The token is in no page, header or log line, signed in or not."""
    stream = Keys(prefix).started
    await _letters(own_fake_adapter, stream, 1)
    seen = []
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        await sign_in(client, TOKEN)
        await client.post("/signin", data={"token": TOKEN + "x"})
        for path in ("/", f"/dead/{stream}", f"/streams/{stream}", "/api/status", "/signin"):
            response = await client.get(path)
            seen.append(await response.text() + str(response.headers))
    out = capsys.readouterr()
    assert not [s for s in seen if TOKEN in s]
    assert TOKEN not in out.out + out.err
    assert "***" in repr(Token(TOKEN))


def test_config_refuses_open_host_without_token() -> None:
    """A non-loopback host without DASHBOARD_TOKEN is a configuration error naming the setting."""
    with pytest.raises(ConfigError) as caught:
        DashboardConfig.load(environ={"DASHBOARD_HOST": "0.0.0.0"})
    assert "DASHBOARD_HOST" == caught.value.setting
    assert DashboardConfig.load(environ={"DASHBOARD_HOST": "::1"}).read_only
    config = DashboardConfig.load(environ={"DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_TOKEN": "t"})
    assert ("0.0.0.0", 8081, False) == (config.host, config.port, config.read_only)
    with pytest.raises(ConfigError):
        DashboardConfig.load(environ={"DASHBOARD_PORT": "http"})


def test_cli_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`printery dashboard --host 0.0.0.0` without a token exits 2 with one line."""
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    code = cli_run(["dashboard", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert 2 == code
    assert 1 == len(err.strip().splitlines())
    assert err.startswith("printery: DASHBOARD_HOST: 0.0.0.0 is not a loopback address")


async def test_a_bug_answers_500_with_the_headers(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """An unexpected error is a plain 500 that still carries the security headers."""

    async def broken(key: str) -> dict[str, str]:
        raise ZeroDivisionError("a bug")

    own_fake_adapter.hash_all = broken  # type: ignore[method-assign]
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get("/timeline/ev-1")
        text = await response.text()
    assert 500 == response.status
    assert "500 Internal Server Error\n" == text
    assert "no-store" == response.headers["Cache-Control"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_ten_wrong_tokens_lock_the_address_out_before_the_next_is_compared(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """Ten wrong tokens in a minute, by form or Bearer, make the eleventh try a 429 even when right.

    Right tokens never count: twenty good Bearer requests first still leave ten wrong ones
    answered 401 before the lock-out; Retry-After says when to come back.
    """
    stream = Keys(prefix).started
    (dead_id,) = await _letters(own_fake_adapter, stream, 1)
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        good = [
            await client.get(f"/dead/{stream}", headers={"Authorization": f"Bearer {TOKEN}"})
            for _ in range(20)
        ]
        wrong = [await client.post("/signin", data={"token": f"guess-{i}"}) for i in range(5)]
        wrong += [
            await client.post(
                f"/dead/{stream}/replay",
                data={"ids": dead_id},
                headers={"Authorization": f"Bearer guess-{i}"},
            )
            for i in range(5)
        ]
        locked_form = await client.post("/signin", data={"token": TOKEN})
        locked_text = await locked_form.text()
        locked_bearer = await client.post(
            f"/dead/{stream}/replay",
            data={"ids": dead_id},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert {200} == {g.status for g in good}
    assert [401] * 10 == [w.status for w in wrong]
    assert [429, 429] == [locked_form.status, locked_bearer.status]
    assert 1 <= int(locked_form.headers["Retry-After"]) <= 60
    assert TOKEN not in locked_text
    assert 1 == await own_fake_adapter.length(f"{stream}:dead")
