"""The demo's ground truth (`truth/`): what it holds, that it explains the scans, and that writing it
left every scan, label map, split and scattering map exactly as the generator made them before."""

import hashlib
import json

import numpy as np
import pytest

from spectra_vae import make_demo_dataset
from spectra_vae.io.demo import (
    COMPONENTS,
    LABEL_NAMES,
    NOISE_SIGMA,
    TRUTH_COMPONENTS,
    TUMOUR_AMIDE_I_SHIFT,
    component_spectra,
    demo_wavenumbers,
    make_demo_scan,
    paraffin_spectrum,
)
from spectra_vae.io.demo_truth import TRUTH_VERSION, DemoTruth, read_demo_truth

# Made by today's generator before the truth was written (commit f729a9d, GENERATOR_VERSION 6), with
# `array_digest` below. Numpy's SIMD paths (AVX-512, AVX2, baseline x86-64-v2) and OpenBLAS kernels
# (SkylakeX, Haswell) gave the same digests; another BLAS (macOS Accelerate) might not.
BEFORE_TRUTH = [  # (make_demo_dataset's arguments, SHA-256 of every array it wrote), generator 6 at f729a9d
    (dict(seed=0, n_scans=3, height=16, width=16, scatter=False), {
        "data0.npy": "7669cf578f288ba798449d5a6214bd551d7a2eb619185f85b0ea64396a5e89e8",
        "data1.npy": "df2ec8f58fcbdf86420ae9822fba7045dbfac61519a62fe82063437dda1dd2ea",
        "data2.npy": "c188b148c14edc6499af0bbd6aedb9b76681939d49c17fed7f44148410bbf342",
        "data_splits.json": "98ac9177f97aa83bfdb45edad744ddc465086ae31fb8fd8374bcf15bb113f12c",
        "labels/data0.npy": "d0ab5f4fdea2f02ee786dbf669064129f1c764743ccf326abfa691cd6e50ff21",
        "labels/data1.npy": "8f6e30a28d5e08d16e4b226c8ab7b95e50f5b3eee07d38e610e741ff6c6a7d8f",
        "labels/data2.npy": "5c1d2d10cb1047adecb01e919d36398ed10e906d835c38e9e285dd6670112ccb",
        "wavenumbers.npy": "1930f34c05fe8e30d9d75c75c5e3f181dfc02c00cccef4f656c9abbdb7f39093",
    }),
    (dict(seed=3, n_scans=4, height=20, width=24, scatter=True, n_abnormal=2), {
        "data0.npy": "b8fe4dbcade409cf9bb8d7b4517f31651e9239d763c4c5c0aad9154320c26228",
        "data1.npy": "fa44137f1b67ef39f32dc4b1430266a79baff1ab75133b400d0f468dc129768f",
        "data2.npy": "2362cd0a1c47ad40b4388c969aa3d20e50d3eb5cce6c1debb8836e625d364ee7",
        "data3.npy": "1a763161366fc42e19a32802ee2adda07729fd9f5ff320e486075acd6025aa44",
        "data_splits.json": "91bf05af9e371ee151b939deea665862d0301551ff21527e0811ec0bb6dd8706",
        "labels/data0.npy": "235008b1b4716d0b061814c3376bddb1d77a7910af9d43e320d23bd92a004bb8",
        "labels/data1.npy": "661cdcc33fc87ab867d9c75bbd97bf86998a19602274924c43f99af08d25b871",
        "labels/data2.npy": "7f13aa4a94ef4c23afbd128e385b5e4641756eb1f244d65870d4c6192e00d61b",
        "labels/data3.npy": "72d42fe7f1498621cf55daa9258e3a6a52a26cd6b308ca68cb5db11a9e8d6038",
        "scattering/data0.npz:baseline": "24017c4fa89d134ff91f894e516a9df0fe3a45ce24c8fbd023cc4a654864759b",
        "scattering/data0.npz:dispersion": "b02e96544ae1a4a49de69960309b43c39c6860d5bc5acf192c79e2137f6ccd44",
        "scattering/data0.npz:nuclei": "09351fe4a4853dafcaf6eb2159dcfe932d56eac2332631f90a072809a43d7b89",
        "scattering/data0.npz:path_length": "efefde44e82c12efdd6bf47cc035dc15a87167fe349c37baf3460a8b603be4ab",
        "scattering/data0.npz:radius_um": "7df68ec41a2e6c84c75609f5f46ed389e4b35711b02e9d13bc18060c590d7e3e",
        "scattering/data0.npz:refractive_index": "65ea606c5eb08c547059bac1b24196733440470202786a09b9b92514a8da61a5",
        "scattering/data0.npz:strength": "bfa6c974e864a11635cbca1ede5ee9e19cde41ae58d92c8b3d422f4c008de623",
        "scattering/data1.npz:baseline": "0725f0a6efb4a080cbf7efebf5201aa52fe49768860937ba67dd8152e4c7a52a",
        "scattering/data1.npz:dispersion": "a9a25d86f0c16b69c9c9cdd9a024d5f48410124ff988fbd3c070afc9802fa0a3",
        "scattering/data1.npz:nuclei": "5fd7eef1e921931c5ffe4b8578e1ef39e8fe23468b38619f4519bb7b3e7fba38",
        "scattering/data1.npz:path_length": "1fc080741f6930902b09c923f24139583ec1ed7e7c3a18cc5428e447b03e3b55",
        "scattering/data1.npz:radius_um": "8f6ad8bf1161e6c8718177a290523565ba5f62e9a6e7e7fa6213fff39e84b63e",
        "scattering/data1.npz:refractive_index": "99ce38ecb1c20fc118b374f1ff44d546a8c49a3dcf06bad3bd597070ceb2aa80",
        "scattering/data1.npz:strength": "a41484b20ed1472949892d55b8011a0117d9ecda928b37d42fdefe399ddad389",
        "scattering/data2.npz:baseline": "630ef62644438b749202d812e8a66f62f3bea5a4095076c3f065c799d64ed67a",
        "scattering/data2.npz:dispersion": "39e61c4f2a9c66548bcfc08769c9366df92459eee3b1d5b5e921e7ebe1b58a51",
        "scattering/data2.npz:nuclei": "216a1d75b6ce11dad1438469850e5882c06d1be24c1706d6f5dbd301e5c0db3b",
        "scattering/data2.npz:path_length": "dd2ce4dd5bb93128503045899dc8d65ac525b1651f4de2770b231ee0a6e77675",
        "scattering/data2.npz:radius_um": "bb25742e6e76343935d58512c18f00209d7ca979bdd28a4213340f93d5a50500",
        "scattering/data2.npz:refractive_index": "802fddb9d62f6242f88dd98f5f3ed57c106734b32061d0c001ed88264b94fa53",
        "scattering/data2.npz:strength": "de6c62035dd6839f41aa3dc40b70dc3731dab6eb63469e40d5aa3a1e707ce893",
        "scattering/data3.npz:baseline": "82ecca0d590dbe0ece879f6393919adc8f3069d6c91c56abf3984344fa973340",
        "scattering/data3.npz:dispersion": "b67dcc29001fb29c182e24f59ab5d03e40537f5cfe8b0ed0e4f27d16f1dd00ac",
        "scattering/data3.npz:nuclei": "409306b53c12afae3a78f96604a8448f68dd0a9e823abee4b98469e10e9e5e19",
        "scattering/data3.npz:path_length": "8e3ff29c9334b251628d271f5035833e5670b68e3971d8985f7bf2976dcc8cae",
        "scattering/data3.npz:radius_um": "c88b2d5d470e0dd123a1d231ec532dc8b863759641de594ba6043f3193e4fe32",
        "scattering/data3.npz:refractive_index": "e9118b1e119499c07897b97a33270372cf006daa7e227562db281f44aaad1938",
        "scattering/data3.npz:strength": "08d22bb1aaa195e3d530761157cc108dc15629d7b04487c849222006f1e195e3",
        "wavenumbers.npy": "1930f34c05fe8e30d9d75c75c5e3f181dfc02c00cccef4f656c9abbdb7f39093",
    }),
    (dict(seed=0, n_scans=4, height=20, width=24, scatter=True), {
        "data0.npy": "050a24a78a16cfec6a584e4cebea676ddc722984c8d1448bb86fab3309c376ac",
        "data1.npy": "b3fb19806d4f0b20fcce2ee4a82a3cf6d99bcfc6e228d456cc6cf9fbf1b4eb53",
        "data2.npy": "59f29207aed363b40f3780f673c5beccc9ddedf4bdeb12c1432400702d691fa7",
        "data3.npy": "18231603a435cccea5ef8647ab9510eec25353280a783d89b89a2486a078c48e",
        "data_splits.json": "5c3fff74720046b56266775761778e9314a8fa4ddaed1784f0d3e8e892791353",
        "labels/data0.npy": "072477295f5196036fb8e14462fa5bc000591ddf5fca76a6db2d2588b2df0daa",
        "labels/data1.npy": "8393145f33ce1b013e5334d8e1465f0c12dcd71c50e2e88c7f12b4970cc0ca16",
        "labels/data2.npy": "8327ab05e3f3b5146e8cdadec92b03602792da598fd464b91fd734f0aa8f1c66",
        "labels/data3.npy": "b849208a4b7b9f82b2625b015a949be1c1400ecb4a4085e1ac1699aaf0bdd615",
        "scattering/data0.npz:baseline": "0e2c6b16a3124645e58d53ce51686cb8f44350121e679c6fe239873f4b176592",
        "scattering/data0.npz:dispersion": "01014651285c98970f900e72333eeffc277afa86461a14e3e512654c547b8ce3",
        "scattering/data0.npz:nuclei": "a189e2f0eae8721e2f067a1cfc6972407860e7a132a755ad412a15c10eee8e11",
        "scattering/data0.npz:path_length": "f7ade1a121a71979870569da3d4920e3568a8f43cfc185be734636c5b8dedbbe",
        "scattering/data0.npz:radius_um": "60c93ec2eaff681dd8157740f9a60cd17f8c615c1762fa2c6ee7f9b6e5489897",
        "scattering/data0.npz:refractive_index": "582c7fb27b8eb9227cebbd57eba47a8f513330d971e1312648ce0989cb54cd8b",
        "scattering/data0.npz:strength": "7aa65004cae1014e55f62701ae275905e169c55b387eefa8b86971f563ba3177",
        "scattering/data1.npz:baseline": "7120fbe13398d80f736b56e3ae34b4faccc534f0d8a1f2d55ce62c375651fc3a",
        "scattering/data1.npz:dispersion": "71f7ca981f406bc8f04fe591aabe838e931b0d3a780ee3095de12c6829318ae8",
        "scattering/data1.npz:nuclei": "197e8cd8e3273e22a629a1375367481887ffc0d21dac800aa06f42e9ac95f42c",
        "scattering/data1.npz:path_length": "a4c23c934145d2364c8cf8d4a56e550af8b625ea59438e2771ead03e43ffe7b3",
        "scattering/data1.npz:radius_um": "46f0b1e15e78bbad83d0d9d295652aa3cb943b2603eadd825734eb7180993228",
        "scattering/data1.npz:refractive_index": "a65963bcaeb6ea0871d9be1454e133b6577f3f167c978c97bf01f77a5e446347",
        "scattering/data1.npz:strength": "822957fe92b687e12630e4d8c4440bf301552178b0b4c08ca2d17050be5fc7e5",
        "scattering/data2.npz:baseline": "fe47b274846e598d9c9b15d5f0430be9e5181d9e73ce812a78a63b1dd7a7a26f",
        "scattering/data2.npz:dispersion": "0f21aa94487e039c092f7a85d51853368c796deee9b021a24e9810970b3783df",
        "scattering/data2.npz:nuclei": "db0834a92eb84c7e35fe48cb933965a6b11dae4b76d2cbc27633d900282dab3f",
        "scattering/data2.npz:path_length": "1f95b259b1236a3adbfc81df38843adb264c9759c3c39db52a866db166e1139b",
        "scattering/data2.npz:radius_um": "82c457238c86080e54edfb3a527d31f70e691f474aac30524d384ae453d2efb4",
        "scattering/data2.npz:refractive_index": "875ca98c2e8e963e892f9fd2cfdce0e6f553e2213d2a4a0e6cf4694b7a5c6b48",
        "scattering/data2.npz:strength": "a5c9a7f750337624539c87331f4f44e1e49e23d37d712852cc7dbec077689f91",
        "scattering/data3.npz:baseline": "c55956acd772ada1d1114296197794f726dfce3374b28af8f00ac469778d1d28",
        "scattering/data3.npz:dispersion": "d62fadf86e91ff1e9ea30ea6c7ab6c773f384e610c5bae07c8aa8721ede4f998",
        "scattering/data3.npz:nuclei": "c46e8186eac9ae5685284d79d5d5b2cd0c0e882d7492d12be59d6af120e65002",
        "scattering/data3.npz:path_length": "c8c0fe33802e6109a118bd193aafd101497993fbf8d70a45f6372bb799a3220c",
        "scattering/data3.npz:radius_um": "462d2a81fa962afeb31cd37541e4ce102d20c728f19e157db801017d90494e9e",
        "scattering/data3.npz:refractive_index": "26de444e7c2a66c97d7c4d7a774fa83a314c77a49a302113a6d57296d00f5a3f",
        "scattering/data3.npz:strength": "1b798eb70b2eba0f58639035de469e621e9e2980bce2269b80a5284761705fc1",
        "wavenumbers.npy": "1930f34c05fe8e30d9d75c75c5e3f181dfc02c00cccef4f656c9abbdb7f39093",
    }),
    (dict(seed=3, n_scans=3, height=16, width=16, scatter=False, n_abnormal=2), {
        "data0.npy": "0cd6a56954c82de16b5024768d127ce5d998248cdb472cca9b8e08d2546bb983",
        "data1.npy": "bbb06e38350e947b9af077b86cf72febab4e6339aafef73e928892ddea021449",
        "data2.npy": "48bc765b3a4c38923cc70be4eb8184a7c35f7b8181673fe5e8e5d1f0cecd0625",
        "data_splits.json": "b2acd70453a856a1f53aee4b2ce4933fec563185a28fe3eeb96091dbae891c10",
        "labels/data0.npy": "e90071b9d3bdbfd983bafb63c287942890dcd7d1e11994d63e7d6d1b4ea90ffa",
        "labels/data1.npy": "0e7ecaf0cfe2f6ab58b71e99fe4a3f81edb4054fd39dbebde42688dc48710243",
        "labels/data2.npy": "29312131202284adec01f904d8b718df4f076283fcdd2a10600cd15124513019",
        "wavenumbers.npy": "1930f34c05fe8e30d9d75c75c5e3f181dfc02c00cccef4f656c9abbdb7f39093",
    }),
]


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (not of the file, so npz timestamps do not matter)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def folder_digests(folder) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".npy":
            out[rel] = array_digest(np.load(path))
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                out.update({f"{rel}:{k}": array_digest(arrays[k]) for k in arrays.files})
        elif rel == "data_splits.json":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("kwargs, before", BEFORE_TRUTH, ids=[
    f"seed{k['seed']}-{k['n_scans']}x{k['height']}x{k['width']}-{'scatter' if k['scatter'] else 'clean'}"
    for k, _ in BEFORE_TRUTH])
def test_writing_the_truth_leaves_scans_labels_splits_and_scattering_bit_for_bit_as_before(tmp_path, kwargs, before):
    now = folder_digests(make_demo_dataset(tmp_path / "demo", **kwargs))
    changed = sorted(k for k, v in before.items() if now.get(k) != v)
    assert not changed, f"differ from the generator before the truth was written: {changed}"
    assert all(k.startswith("truth/") for k in set(now) - set(before))  # what is new is the truth alone


def test_truth_folder_holds_unshifted_components_then_paraffin_and_one_file_per_scan(tmp_path):
    path = make_demo_dataset(tmp_path / "demo", n_scans=3, height=12, width=12, seed=1)
    wn = demo_wavenumbers()
    components, names, truth = read_demo_truth(path, "data2.npy")
    assert names == [*COMPONENTS, "paraffin"] == list(TRUTH_COMPONENTS)
    assert components.shape == (6, 442)
    np.testing.assert_array_equal(components[:5], component_spectra(wn))  # no amide I shift
    np.testing.assert_array_equal(components[5], paraffin_spectrum(wn))
    assert sorted(p.name for p in (path / "truth").iterdir()) == [
        "components.json", "components.npy", "data0.npz", "data1.npz", "data2.npz"]
    assert truth.fractions.shape == (12, 12, 6) and truth.thickness.shape == truth.amide_i_shift.shape == (12, 12)
    assert json.loads((path / "demo.json").read_text())["truth"] == TRUTH_VERSION


def test_make_demo_scan_returns_the_truth_only_when_asked_and_the_same_scan_either_way():
    def scan(**kw):
        return make_demo_scan(np.random.default_rng([4, 2]), 20, 18, abnormal=True,
                              paraffin=np.random.default_rng([4, 2, 1]), **kw)

    plain = scan()
    with_truth = scan(return_truth=True)
    both = scan(scatter=True, return_scattering=True, return_truth=True)
    assert len(plain) == 2 and len(scan(return_scattering=True)) == 3
    assert len(with_truth) == 3 and isinstance(with_truth[2], DemoTruth) and len(both) == 4
    assert np.array_equal(plain[0], with_truth[0]) and np.array_equal(plain[1], with_truth[1])
    for name, value in with_truth[2].maps().items():  # the truth is the clean scan's, scattered or not
        assert np.array_equal(value, both[3].maps()[name])


@pytest.fixture(scope="module")
def truth_demo(tmp_path_factory):
    """Two normal scans, then a tumour scan with paraffin and one without; noisy and noise-free twins."""
    root = tmp_path_factory.mktemp("truth")
    args = dict(n_scans=4, height=40, width=40, seed=11, n_abnormal=2)
    return make_demo_dataset(root / "noisy", **args), make_demo_dataset(root / "clean", noise=0.0, **args)


def reconstruct(components: np.ndarray, truth: DemoTruth) -> np.ndarray:
    """thickness · (fractions @ components − amide I shift · fractions @ slope of the amide I bands), (H, W, C)."""
    wn = demo_wavenumbers()
    slope = np.gradient(component_spectra(wn, amide_i_only=True), wn, axis=1)
    slope = np.vstack([slope, np.zeros((1, len(wn)))])  # paraffin has no amide I band
    f = truth.fractions.astype(np.float64)
    return truth.thickness[..., None] * (f @ components - truth.amide_i_shift[..., None] * (f @ slope))


def test_truth_explains_the_clean_scans_to_the_noise_level(truth_demo):
    noisy_dir, clean_dir = truth_demo
    residuals, tumour_seen, wax_seen = [], False, False
    for i in range(4):
        components, _, truth = read_demo_truth(clean_dir, f"data{i}.npy")
        labels = np.load(clean_dir / "labels" / f"data{i}.npy")
        tissue = labels > 0
        model = reconstruct(components, truth)
        clean = np.load(clean_dir / f"data{i}.npy")
        error = np.abs(clean - model)[tissue].max(axis=1)
        # normal tissue: exactly the generator's mixture (to float32 rounding); tumour's mean amide I
        # shift, which the generator moves by band centre, is first order here: a few noise levels at most
        normal = np.isin(labels[tissue], [1, 2])
        assert error[normal].max() < 1e-5
        assert error.max() < 3 * NOISE_SIGMA
        assert np.abs(clean[~tissue]).max() == 0 and not model[~tissue].any()
        residuals.append((np.load(noisy_dir / f"data{i}.npy") - model)[tissue])
        tumour_seen |= bool((labels == LABEL_NAMES.index("tumour")).any())
        wax_seen |= bool((labels == LABEL_NAMES.index("paraffin")).any())
    assert tumour_seen and wax_seen
    rms = np.sqrt(np.mean(np.concatenate(residuals) ** 2))
    assert rms == pytest.approx(NOISE_SIGMA, rel=0.03)  # what is left on the noisy scans is their noise


def test_fractions_are_non_negative_zero_on_background_and_tissue_fractions_sum_to_one(truth_demo):
    _, clean_dir = truth_demo
    for i in range(4):
        _, _, truth = read_demo_truth(clean_dir, f"data{i}.npy")
        labels = np.load(clean_dir / "labels" / f"data{i}.npy")
        tissue, wax = labels > 0, labels == LABEL_NAMES.index("paraffin")
        assert (truth.fractions >= 0).all()
        assert not truth.fractions[~tissue].any() and not truth.thickness[~tissue].any()
        assert not truth.amide_i_shift[~tissue].any()
        np.testing.assert_allclose(truth.fractions[tissue][:, :5].sum(axis=1), 1, atol=1e-6)
        assert (truth.fractions[..., 5] > 0).tolist() == wax.tolist()  # paraffin where labelled, nowhere else
        assert (truth.thickness[tissue] > 0).all()
    # the tumour's amide I band sits TUMOUR_AMIDE_I_SHIFT lower on average; normal tissue's around 0
    _, _, truth = read_demo_truth(clean_dir, "data3.npy")
    labels = np.load(clean_dir / "labels" / "data3.npy")
    tumour, normal = labels == LABEL_NAMES.index("tumour"), np.isin(labels, [1, 2])
    assert truth.amide_i_shift[tumour].mean() - truth.amide_i_shift[normal].mean() == pytest.approx(
        TUMOUR_AMIDE_I_SHIFT, abs=0.5)
