"""The clinician page in a real browser: headless Debian Chromium driven by Playwright.

Playwright cannot download its own browsers here, so it drives /usr/bin/chromium (Debian's
package; scripts/test.sh installs it). The test skips, saying why, when either is missing."""


import pytest

from tests.serving_helpers import MODEL_NAME, MODEL_VERSION, sample_images

# The model and server fixtures, registered once so both serving test modules share one server.
pytest_plugins = ["tests.serving_fixtures"]

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


def test_upload_shows_label_probability_version_and_heatmap(page, demo_raw, tiny_model_dir):
    assert "not a diagnosis" in page.inner_text("#disclaimer")
    image = sample_images(demo_raw)["malignant"][0]
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0", timeout=60_000)
    from components.core.predictor import Predictor

    expected = Predictor.load(str(tiny_model_dir)).predict_bytes(image.read_bytes())
    shown = {"benign": "benign", "malignant": "malignant", "refer": "refer to a clinician"}[expected["decision"]]
    assert page.inner_text("#label").strip().lower() == shown
    assert page.is_hidden("#refer") == (expected["decision"] != "refer")
    assert page.inner_text("#p-malignant") == f"{100 * expected['p_malignant']:.1f} %"
    probability = page.inner_text("#p-malignant")
    assert probability.endswith("%") and 0.0 <= float(probability.rstrip(" %")) <= 100.0
    assert page.inner_text("#model-name") == MODEL_NAME
    assert page.inner_text("#model-version") == MODEL_VERSION
    assert _heatmap_size(page) == [320, 320]
    assert page.is_hidden("#error")


def test_dropping_an_upper_case_png_works(page, demo_raw, tmp_path):
    from PIL import Image

    png = tmp_path / "LESION.PNG"
    Image.open(sample_images(demo_raw)["benign"][0]).save(png, format="PNG")
    data = list(png.read_bytes())
    # A real drop event carrying the file, as when a clinician drags it onto the page.
    page.evaluate("""(data) => {
        const file = new File([new Uint8Array(data)], "LESION.PNG", {type: "image/png"});
        const dt = new DataTransfer();
        dt.items.add(file);
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""", data)
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0", timeout=60_000)
    assert page.inner_text("#label").strip().lower() in ("benign", "malignant", "refer to a clinician")
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
    from tests.drawn_images import package_photographs

    photo = tmp_path / "china.jpg"
    photo.write_bytes(package_photographs()["china.jpg"])
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#output:not([hidden])", timeout=60_000)
    assert page.inner_text("#label").strip() == "Refer to a clinician"
    assert page.is_visible("#refer")
    assert "does not look like a dermoscopic image of a skin lesion, so no result is given" in page.inner_text("#refer")
    assert page.is_hidden("#scores") and page.is_hidden("#heatmap-figure")
    assert page.get_attribute("#heatmap", "src") is None
    shot = tmp_path / "refer.png"
    page.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] > 300 and im.size[1] > 300
    print(f"screenshot: {shot}")
