"""The clinician page in a real browser: headless Debian Chromium driven by Playwright.

Playwright cannot download its own browsers here, so it drives /usr/bin/chromium (Debian's
package; scripts/test.sh installs it). The tests skip, saying why, when either is missing, and fail
instead where SKIN_CANCER_REQUIRE_BROWSER=1 (scripts/test.sh sets it where Chromium is installed)."""

import pytest

from tests.support.serving_helpers import MODEL_NAME, MODEL_VERSION, sample_images

# The model and server fixtures, registered once so both serving test modules share one server.
pytest_plugins = ["tests.support.serving_fixtures"]


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(server.url + "/")
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _heatmap_size(page) -> tuple[int, int]:
    return page.eval_on_selector("#heatmap", "img => [img.naturalWidth, img.naturalHeight]")


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The served model loaded in this process: what the page must show."""
    from components.core.inference.predictor import Predictor

    return Predictor.load(str(tiny_model_dir))


def test_upload_shows_the_predictors_label_probability_and_threshold(page, demo_raw, reference):
    assert "not a diagnosis" in page.inner_text("#disclaimer")
    image = sample_images(demo_raw)["malignant"][0]
    expected = reference.predict_bytes(image.read_bytes())
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0", timeout=60_000)
    # Exactly what the predictor gives, as the page writes it: the decision (in words for a refer),
    # and p(malignant) and the threshold in percent with one decimal.
    shown = {"benign": "benign", "malignant": "malignant", "refer": "Refer to a clinician"}[expected["decision"]]
    assert page.text_content("#label") == shown  # the DOM text (CSS capitalises a class name as shown)
    assert page.get_attribute("#label", "class") == expected["decision"]
    assert page.is_hidden("#refer") == (expected["decision"] != "refer")
    assert page.inner_text("#p-malignant") == f"{100 * expected['p_malignant']:.1f} %"
    assert page.inner_text("#threshold") == f"{100 * reference.threshold:.1f} %"
    assert page.inner_text("#model-name") == MODEL_NAME
    assert page.inner_text("#model-version") == MODEL_VERSION
    assert _heatmap_size(page) == [320, 320]
    assert page.is_hidden("#error")


def test_dropping_an_upper_case_png_works(page, demo_raw, tmp_path, reference):
    from PIL import Image

    png = tmp_path / "LESION.PNG"
    Image.open(sample_images(demo_raw)["benign"][0]).save(png, format="PNG")
    data = list(png.read_bytes())
    # A real drop event carrying the file, as when a clinician drags it onto the page.
    page.evaluate(
        """(data) => {
        const file = new File([new Uint8Array(data)], "LESION.PNG", {type: "image/png"});
        const dt = new DataTransfer();
        dt.items.add(file);
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""",
        data,
    )
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0", timeout=60_000)
    expected = reference.predict_bytes(png.read_bytes())
    shown = {"benign": "benign", "malignant": "malignant", "refer": "Refer to a clinician"}[expected["decision"]]
    assert (page.text_content("#label"), page.inner_text("#p-malignant")) == (
        shown,
        f"{100 * expected['p_malignant']:.1f} %",
    )
    assert page.inner_text("#status").startswith("Done: LESION.PNG")


def test_a_file_that_is_not_an_image_shows_the_reason(page, tmp_path):
    fake = tmp_path / "scan.jpg"
    fake.write_text("not really a picture")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "not an image" in page.inner_text("#error")
    assert page.is_hidden("#output")


def test_an_out_of_scope_image_is_referred_plainly_with_no_result_and_no_heatmap(page, tmp_path):
    """A photograph of a palace: the page says refer, in words a clinician reads, and shows no
    probability and no heatmap (a screenshot is kept for people to look at)."""
    from tests.support.drawn_images import package_photographs

    photo = tmp_path / "china.jpg"
    photo.write_bytes(package_photographs()["china.jpg"])
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    assert page.inner_text("#label").strip() == "Refer to a clinician"
    assert page.is_visible("#refer")
    assert "does not look like a dermoscopic image of a skin lesion, so no result is given" in page.inner_text("#refer")
    assert page.is_hidden("#scores") and page.is_hidden("#heatmap-figure")
    assert page.text_content("#p-malignant") == ""  # no number, not even hidden in the page
    assert page.is_hidden("#prediction-set")
    assert page.get_attribute("#heatmap", "src") is None
    shot = tmp_path / "refer.png"
    page.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] > 300 and im.size[1] > 300
    print(f"screenshot: {shot}")


def test_a_required_browser_that_cannot_run_fails_instead_of_skipping(monkeypatch):
    from tests.conftest import REQUIRE_BROWSER, _no_browser

    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="SKIN_CANCER_REQUIRE_BROWSER=1 but the browser tests cannot run"):
        _no_browser("Chromium not installed")
    monkeypatch.delenv(REQUIRE_BROWSER)
    with pytest.raises(pytest.skip.Exception, match="Chromium not installed"):
        _no_browser("Chromium not installed")
