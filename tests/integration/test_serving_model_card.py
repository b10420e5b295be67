"""The served model's card: linked from the clinician page, served at /model-card (HTML) and
/model-card.md (Markdown) when the model has one, a clear 404 when it has none."""

import shutil

import requests

from tests.support.serving_helpers import MODEL_NAME, MODEL_VERSION, Server

# The model and server fixtures, registered once so the serving test modules share one server.
pytest_plugins = ["tests.support.serving_fixtures"]

CARD = (
    f"# Model card: {MODEL_NAME} version {MODEL_VERSION}\n\nDecision support, not a diagnosis.\n"
    "<b>not markup</b> & $name stays as written\n"
)


def test_the_page_links_the_card_and_a_model_without_one_gets_a_clear_404(server):
    assert 'href="model-card"' in requests.get(server.url + "/", timeout=10).text
    for path in ("/model-card", "/model-card.md"):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 404
        message = r.json()["error"]
        assert f"no model card for {MODEL_NAME} version {MODEL_VERSION}" in message
        assert "model_card.md beside model.keras" in message
    assert requests.get(server.url + "/v2/health/ready", timeout=10).status_code == 200


def test_a_model_folder_with_its_card_serves_it(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model_card.md").write_text(CARD, encoding="utf-8")
    srv = Server(
        ["--model-uri", str(folder), "--model-name", MODEL_NAME, "--model-version", MODEL_VERSION],
        tmp_path / "server.log",
    )
    try:
        page = requests.get(srv.url + "/model-card", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f"<h1>Model card: {MODEL_NAME} version {MODEL_VERSION}</h1>" in page.text
        # The card is text on the page, never markup, and the template's own fields are not re-read in it.
        assert "&lt;b&gt;not markup&lt;/b&gt; &amp; $name stays as written" in page.text
        markdown = requests.get(srv.url + "/model-card.md", timeout=10)
        assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
        assert markdown.text == CARD
    finally:
        srv.stop()
    assert "with its model card" in (tmp_path / "server.log").read_text()


def test_the_server_does_not_load_the_plotting_stack():
    """Figures are drawn by the pipeline steps only: serving starts without matplotlib."""
    import subprocess
    import sys

    probe = (
        "import sys, components.core.serving.app; "
        "print([m for m in ('matplotlib', 'components.core.evaluation.figures') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
