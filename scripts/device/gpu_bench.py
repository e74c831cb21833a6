#!/usr/bin/env python3
"""sdnode against stable-diffusion.cpp on a lent GPU machine, both engines in the same run.

Run on the GPU machine by the device tool, from the repository root, after scripts/device/prepare.sh filled
.device-carry/ here (see docs/benchmarks.md for the exact call):

    python3 scripts/device/gpu_bench.py --out "$OUT" [--budget 540] [--sdxl] [--steps 20]

Stages, each time-boxed so that the whole run ends within --budget seconds and a report comes back even when a
stage fails or runs out of time (the report files are rewritten after every stage):
  1. machine: GPU name, driver, memory, CUDA compiler, cmake, compilers (nvidia-smi, nvcc, ...)
  2. Vulkan tools: the carried Debian packages unpacked (glslc, headers, loader)
  3. models: random-weight SD 1.5 (and with --sdxl, SDXL) checkpoints written by the carried generators of
     ../shared/golden (python3 + numpy), in the background while the builds run
  4. builds: our engine's sdn_bench_sd (Vulkan backend; the carried prebuilt binary when the build fails),
     stable-diffusion.cpp sd-cli with CUDA and with Vulkan from the carried source
  5. runs: SD 1.5 512x512, --steps (20) euler steps, CFG 7, for each engine; SDXL 1024x1024 with --sdxl
     Per run: per-step time (ours: the best of the steps; stable-diffusion.cpp: sampling time / steps), it/s,
     VAE decode time, peak GPU memory (nvidia-smi sampled every 100 ms, minus the memory in use before the run;
     ours also reports its own device-memory peak), peak RSS (the child's maximum resident set)
Report: $OUT/report.json, $OUT/report.md (with the ratios ours/theirs), $OUT/log.txt (every command and its tail).

--cpu-only is the dry run for a machine without a GPU: stable-diffusion.cpp is built CPU-only (in a temporary
folder, from the carried copy), ours runs on the CPU, sizes and steps are small (--size 64 --steps 2 by default),
and the model given by --model is used instead of generating one.
"""
import argparse
import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
CARRY = os.path.join(ROOT, '.device-carry')
PROMPT = 'a red fox in the snow, highly detailed'

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--out', default=os.environ.get('OUT') or os.path.join(ROOT, 'bench-results', 'device'))
ap.add_argument('--budget', type=float, default=540, help='seconds for the whole run (default 540)')
ap.add_argument('--steps', type=int, default=None, help='sampling steps (default 20; 2 with --cpu-only)')
ap.add_argument('--size', type=int, default=None, help='SD 1.5 image size (default 512; 64 with --cpu-only)')
ap.add_argument('--sdxl', action='store_true', help='also SDXL 1024x1024 (7 GB random checkpoint, ~2 min to write)')
ap.add_argument('--sdxl-steps', type=int, default=4)
ap.add_argument('--cpu-only', action='store_true', help='dry run without a GPU (see above)')
ap.add_argument('--model', help='an SD 1.5 checkpoint to use instead of generating one')
ap.add_argument('--jobs', type=int, default=os.cpu_count() or 2)
ap.add_argument('--work', default=None, help='scratch folder (default: a new temporary folder)')
args = ap.parse_args()
CPU = args.cpu_only
STEPS = args.steps or (2 if CPU else 20)
SIZE = args.size or (64 if CPU else 512)
T0 = time.monotonic()
os.makedirs(args.out, exist_ok=True)
WORK = args.work or tempfile.mkdtemp(prefix='sdnode-device-')
os.makedirs(WORK, exist_ok=True)
LOG = open(os.path.join(args.out, 'log.txt'), 'a', buffering=1)
report = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'mode': 'cpu-only dry run' if CPU else 'gpu',
          'budget_s': args.budget, 'machine': {}, 'builds': {}, 'runs': [], 'notes': []}


def left():
    return args.budget - (time.monotonic() - T0)


def log(msg):
    line = '[%6.1fs] %s' % (time.monotonic() - T0, msg)
    print(line, flush=True)
    LOG.write(line + '\n')


def note(msg):
    log('NOTE: ' + msg)
    report['notes'].append(msg)


def sh(cmd, timeout=60, env=None, cwd=None):
    """Runs cmd (a list, or a string for the shell) within min(timeout, time left - 15 s); returns (rc, text, s)."""
    limit = max(1.0, min(timeout, left() - 15))
    t = time.monotonic()
    log('$ ' + (cmd if isinstance(cmd, str) else ' '.join(cmd)) + '   (limit %.0fs)' % limit)
    try:
        p = subprocess.run(cmd, shell=isinstance(cmd, str), cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=limit)
        text, rc = p.stdout.decode('utf8', 'replace'), p.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = (e.stdout or b'').decode('utf8', 'replace') + '\n(time limit reached)', 124
    except OSError as e:
        text, rc = str(e), 127
    LOG.write(text[-4000:] + '\n')
    return rc, text, time.monotonic() - t


def first_line(cmd):
    rc, text, _ = sh(cmd, timeout=30)
    return text.strip().splitlines()[0] if rc == 0 and text.strip() else None


def write_report():
    report['elapsed_s'] = round(time.monotonic() - T0, 1)
    with open(os.path.join(args.out, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, 'report.md'), 'w') as f:
        f.write(markdown())


def fmt(x, d=3):
    return ('%.*f' % (d, x)) if isinstance(x, (int, float)) and x == x else '-'


def markdown():
    m = report['machine']
    out = ['# sdnode vs stable-diffusion.cpp, %s (%s)' % (report['started'], report['mode']), '',
           'GPU: %s; driver %s; %s. CPU: %s. Elapsed %.0f s of a %.0f s budget.' % (
               m.get('gpu', '-'), m.get('driver', '-'), m.get('gpu_memory', '-'), m.get('cpu', '-'),
               report.get('elapsed_s', 0), args.budget), '',
           '| model | size | steps | engine | backend | s/step | it/s | VAE decode s | peak GPU MiB (nvidia-smi) | '
           'own device peak MiB | peak RSS MiB | status |', '|' + '---|' * 12]
    for r in report['runs']:
        out.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            r['model'], r['size'], r['steps'], r['engine'], r['backend'], fmt(r.get('step_s')), fmt(r.get('it_s'), 2),
            fmt(r.get('decode_s')), fmt(r.get('gpu_peak_mib'), 0), fmt(r.get('own_device_peak_mib'), 0),
            fmt(r.get('rss_peak_mib'), 0), r.get('status', '')))
    out += ['', '## Ratios (ours / theirs, same run; < 1 is faster or smaller for sdnode)', '',
            '| model | ours | theirs | s/step | VAE decode | peak GPU memory | peak RSS |', '|---|---|---|---|---|---|---|']
    for q in report.get('ratios', []):
        out.append('| %s | %s | %s | %s | %s | %s | %s |' % (q['model'], q['ours'], q['theirs'], fmt(q.get('step'), 2),
                                                          fmt(q.get('decode'), 2), fmt(q.get('gpu_mem'), 2),
                                                          fmt(q.get('rss'), 2)))
    out += ['', '## Builds', '']
    for k, b in report['builds'].items():
        out.append('- %s: %s (%s s)%s%s' % (k, b.get('status'), fmt(b.get('seconds'), 0),
                                            ('; ' + b['note']) if b.get('note') else '',
                                            ('; ' + ', '.join(b['glslc'])) if b.get('glslc') else ''))
    if report['notes']:
        out += ['', '## Notes', ''] + ['- ' + n for n in report['notes']]
    return '\n'.join(out) + '\n'


# ---------------------------------------------------------------------------------------------------------------
# 1. machine
# ---------------------------------------------------------------------------------------------------------------
def machine():
    m = report['machine']
    m['cpu'] = (first_line("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2") or '').strip() + ', %d CPUs' % (
        os.cpu_count() or 0)
    m['uname'] = first_line(['uname', '-srm'])
    m['glibc'] = first_line('ldd --version | head -1')
    m['cmake'] = first_line('cmake --version | head -1')
    m['cxx'] = first_line('c++ --version | head -1')
    m['ninja'] = first_line('ninja --version')
    m['python'] = sys.version.split()[0]
    if not CPU:
        q = first_line(['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'])
        if q:
            parts = [p.strip() for p in q.split(',')]
            m['gpu'], m['driver'], m['gpu_memory'] = parts[0], parts[1], parts[2] if len(parts) > 2 else '-'
        else:
            note('nvidia-smi gave no GPU')
        m['nvcc'] = first_line("nvcc --version | grep -i release")
    else:
        m['gpu'] = 'none (cpu-only dry run)'
    write_report()


# ---------------------------------------------------------------------------------------------------------------
# 2. Vulkan tools from the carried Debian packages
# ---------------------------------------------------------------------------------------------------------------
VK = {}


def vulkan_tools():
    """Unpacks the carried packages: .device-carry/debs/{bookworm,trixie}/*.deb into WORK/vkroot-<release>.

    Headers and SPIRV-Headers: trixie's (ggml 8e800ce needs Vulkan headers newer than bookworm's 1.3.239). glslc:
    trixie's (2025.2: ggml's cooperative-matrix shaders) where it runs (it needs glibc 2.38), else bookworm's.
    The loader: the machine's own if it has one, else bookworm's libvulkan1 unpacked to / (runs on any glibc); builds
    link against bookworm's libvulkan.so.
    """
    have_loader = sh('ldconfig -p | grep -q "libvulkan.so.1"', timeout=20)[0] == 0
    roots = {}
    for rel in ['trixie', 'bookworm']:
        debs = os.path.join(CARRY, 'debs', rel)
        if not os.path.isdir(debs):
            continue
        root = roots[rel] = os.path.join(WORK, 'vkroot-' + rel)
        os.makedirs(root, exist_ok=True)
        for d in sorted(os.listdir(debs)):
            if d.endswith('.deb'):
                sh(['dpkg', '-x', os.path.join(debs, d), root], timeout=60)
                if d.startswith('libvulkan1_') and rel == 'bookworm' and not have_loader and not CPU:
                    sh(['dpkg', '-x', os.path.join(debs, d), '/'], timeout=60)  # as the device tool's notes say
    if not CPU:
        sh('ldconfig', timeout=30)

    def libdir(root):
        return os.path.join(root, 'usr', 'lib', 'x86_64-linux-gnu')

    VK.clear()
    for rel, root in roots.items():  # trixie first
        glslc = os.path.join(root, 'usr', 'bin', 'glslc')
        env = dict(os.environ, LD_LIBRARY_PATH=libdir(root) + ':' + os.environ.get('LD_LIBRARY_PATH', ''))
        if os.path.exists(glslc) and sh([glslc, '--version'], timeout=20, env=env)[0] == 0:
            VK.update(glslc=glslc, glslc_from=rel, env=env)
            break
    if not VK.get('glslc') and shutil.which('glslc'):
        VK.update(glslc=shutil.which('glslc'), glslc_from='the machine', env=dict(os.environ))
    for rel, root in roots.items():
        inc = os.path.join(root, 'usr', 'include')
        if not VK.get('include') and os.path.exists(os.path.join(inc, 'vulkan', 'vulkan.h')):
            VK.update(include=inc, include_from=rel)
        sph = os.path.join(root, 'usr', 'share', 'cmake', 'SPIRV-Headers')
        if not VK.get('spirv_headers') and os.path.isdir(sph):
            VK['spirv_headers'] = sph
    for rel in ['bookworm', 'trixie']:  # link against the loader that runs on any glibc
        so = os.path.join(libdir(roots[rel]), 'libvulkan.so') if rel in roots else ''
        if not VK.get('lib') and so and os.path.exists(so):
            VK['lib'] = so
    if not VK.get('include') and os.path.exists('/usr/include/vulkan/vulkan.h'):
        VK.update(include='/usr/include', include_from='the machine')
    icd = '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json'
    if not CPU and os.path.exists(icd) and not any(os.path.isdir(p) and os.listdir(p) for p in
                                                    ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d']):
        os.environ['VK_DRIVER_FILES'] = icd
        note('VK_DRIVER_FILES=' + icd)
    report['machine']['vulkan_tools'] = {k: v for k, v in VK.items() if k != 'env'}
    if not VK.get('glslc') or not VK.get('include'):
        note('no glslc or Vulkan headers (were the .deb files carried? scripts/device/prepare.sh): Vulkan builds skipped')
    elif VK.get('glslc_from') != 'trixie':
        note('glslc from %s, not trixie: ggml builds no cooperative-matrix shaders with it' % VK.get('glslc_from'))
    write_report()


# ---------------------------------------------------------------------------------------------------------------
# 3. models (background)
# ---------------------------------------------------------------------------------------------------------------
MODELS = {}


def start_models():
    gen = os.path.join(CARRY, 'gen')
    jobs = []
    if args.model:
        MODELS['sd15'] = args.model
    else:
        jobs.append(('sd15', [sys.executable, os.path.join(gen, 'make_random_sd15.py'),
                              os.path.join(WORK, 'sd15-random.safetensors'), '--seed', '1234']))
    if args.sdxl:
        jobs.append(('sdxl', [sys.executable, os.path.join(gen, 'make_random_sd.py'), 'sdxl',
                              os.path.join(WORK, 'sdxl-random.safetensors')]))

    def run():
        for name, cmd in jobs:  # one after the other: the SDXL file needs 7 GB of memory and disk
            if not os.path.exists(cmd[1]):
                note('model generator %s not carried (scripts/device/prepare.sh copies ../shared/golden)' % cmd[1])
                continue
            rc, text, s = sh(cmd, timeout=400)
            if rc == 0:
                MODELS[name] = cmd[2]
                log('model %s written in %.0f s' % (name, s))
            else:
                note('writing the %s checkpoint failed (rc %d): %s' % (name, rc, text.strip()[-300:]))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def merges():
    src = os.path.join(ROOT, 'data', 'clip-bpe-merges.txt.gz')
    dst = os.path.join(WORK, 'clip-merges.txt')
    if not os.path.exists(dst):
        with gzip.open(src, 'rb') as f, open(dst, 'wb') as g:
            g.write(f.read())
    return dst


# ---------------------------------------------------------------------------------------------------------------
# 4. builds
# ---------------------------------------------------------------------------------------------------------------
BIN = {}


def build(key, src, bdir, cmake_args, target, binary, timeout, env=None, configure_only=False):
    t = time.monotonic()
    if timeout < 30:
        report['builds'][key] = {'status': 'skipped: out of time', 'seconds': 0}
        note('%s not built: out of time' % key)
        return
    b = report['builds'][key] = {'status': 'started'}
    write_report()
    gen = ['-G', 'Ninja'] if shutil.which('ninja') else []
    rc, text, _ = sh(['cmake', '-S', src, '-B', bdir, '-DCMAKE_BUILD_TYPE=Release'] + gen + cmake_args,
                     timeout=min(120, timeout), env=env)
    # what ggml's Vulkan build found the shader compiler able to do (its fast paths depend on it)
    feats = re.findall(r'(GL_\w+ (?:not )?supported by glslc)', text)
    if feats:
        b['glslc'] = feats
        missing = [f.split()[0] for f in feats if ' not supported' in f]
        if missing and key not in [n.split(':')[0] for n in report['notes']]:
            note('%s: the glslc used (%s) lacks %s, so ggml compiles no shaders that use them: its Vulkan figures '
                 'may be below what a build with a current Vulkan SDK gives' % (key, VK.get('glslc_from'),
                                                                               ', '.join(missing)))
    if configure_only:
        b['status'] = 'configured' if rc == 0 else 'configure failed (rc %d)' % rc
        b['seconds'] = round(time.monotonic() - t, 1)
        if rc != 0:
            b['note'] = ' '.join(text.strip().splitlines()[-3:])[-400:]
        log('configure %s: %s' % (key, b['status']))
        write_report()
        return
    if rc == 0:
        rc, text, _ = sh(['cmake', '--build', bdir, '--target', target, '-j', str(args.jobs)],
                         timeout=timeout - (time.monotonic() - t), env=env)
    b['seconds'] = round(time.monotonic() - t, 1)
    path = os.path.join(bdir, binary)
    if rc == 0 and os.path.exists(path):
        b['status'] = 'built'
        BIN[key] = path
    else:
        b['status'] = 'failed (rc %d)' % rc if rc != 124 else 'out of time'
        b['note'] = ' '.join(text.strip().splitlines()[-3:])[-400:]
    log('build %s: %s in %.0f s' % (key, b['status'], b['seconds']))
    write_report()


def builds():
    sd_src = os.path.join(CARRY, 'sdcpp')
    # ours: the engine's benchmark program with the Vulkan backend (the N-API addon itself needs node, absent there)
    # (the dry run builds the same Vulkan-enabled program with the carried tools and runs it on the CPU backend)
    key = 'sdnode-cpu' if CPU else 'sdnode-vulkan'
    if VK.get('glslc') and VK.get('include'):
        build(key, ROOT, os.path.join(WORK, 'sdn'),
              ['-DSDN_VULKAN=ON', '-DSDN_GLSLC=' + VK['glslc'], '-DSDN_VULKAN_INCLUDE=' + VK['include']],
              'sdn_bench_sd', 'bin/sdn_bench_sd', 900 if CPU else 240, env=VK['env'])
    if key not in BIN:
        pre = os.path.join(CARRY, 'bin', 'sdn_bench_sd')
        if os.path.exists(pre):
            BIN[key] = pre
            note('ours: using the sdn_bench_sd carried from the development machine (not built here)')
    if not os.path.exists(os.path.join(sd_src, 'CMakeLists.txt')):
        note('stable-diffusion.cpp source not carried (.device-carry/sdcpp: scripts/device/prepare.sh)')
        return
    common = ['-DSD_BUILD_EXAMPLES=ON', '-DSD_WEBP=OFF', '-DSD_WEBM=OFF', '-DGGML_NATIVE=ON']
    vk = []
    if VK.get('glslc') and VK.get('include') and VK.get('lib'):
        vk = ['-DSD_VULKAN=ON', '-DVulkan_GLSLC_EXECUTABLE=' + VK['glslc'], '-DVulkan_INCLUDE_DIR=' + VK['include'],
              '-DVulkan_LIBRARY=' + VK['lib']]
        if VK.get('spirv_headers'):
            vk.append('-DSPIRV-Headers_DIR=' + VK['spirv_headers'])
    if CPU:
        if vk:  # the Vulkan build's configure step with the carried tools (the build itself is for the GPU machine)
            build('sdcpp-vulkan-configure', sd_src, os.path.join(WORK, 'sdcpp-vulkan'), common + vk, 'sd-cli',
                  'bin/sd-cli', 120, env=VK['env'], configure_only=True)
        build('sdcpp-cpu', sd_src, os.path.join(WORK, 'sdcpp-cpu'), common, 'sd-cli', 'bin/sd-cli', 1200)
        return
    # Vulkan first (the goal is sdnode >= stable-diffusion.cpp's Vulkan speed), then CUDA with what is left
    # after keeping ~3 minutes for the runs. GGML_CUDA_FA=OFF: sd-cli uses flash attention only with --diffusion-fa,
    # which these runs do not pass, and its kernels are most of ggml-cuda's build time.
    if vk:
        build('sdcpp-vulkan', sd_src, os.path.join(WORK, 'sdcpp-vulkan'), common + vk, 'sd-cli', 'bin/sd-cli',
              min(300, left() - 240), env=VK['env'])
    if shutil.which('nvcc'):
        build('sdcpp-cuda', sd_src, os.path.join(WORK, 'sdcpp-cuda'),
              common + ['-DSD_CUDA=ON', '-DCMAKE_CUDA_ARCHITECTURES=native', '-DGGML_CUDA_FA=OFF'], 'sd-cli',
              'bin/sd-cli', min(360, left() - 180))
    else:
        note('no nvcc: stable-diffusion.cpp CUDA build skipped')


# ---------------------------------------------------------------------------------------------------------------
# 5. runs
# ---------------------------------------------------------------------------------------------------------------
class GpuSampler:
    """Peak of nvidia-smi's memory.used while a run lasts (sampled every 100 ms), minus the value before it."""

    def __init__(self):
        self.proc, self.base, self.peak = None, None, None

    @staticmethod
    def now():
        try:
            o = subprocess.run(['nvidia-smi', '--query-gpu=memory.used', '--format=csv,noheader,nounits'],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout.decode()
            return float(o.split()[0])
        except Exception:
            return None

    def __enter__(self):
        if CPU or not shutil.which('nvidia-smi'):
            return self
        self.base = self.now()
        self.proc = subprocess.Popen(['nvidia-smi', '--query-gpu=memory.used', '--format=csv,noheader,nounits',
                                      '-lms', '100'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.vals = []
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.vals.append(float(line.split()[0]))
            except (ValueError, IndexError):
                pass

    def __exit__(self, *a):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.th.join(timeout=2)
            if self.vals and self.base is not None:
                self.peak = max(self.vals) - self.base


def timed(cmd, timeout, env=None):
    """Runs cmd with its own peak RSS (wait4) and the GPU memory sampler; returns a dict."""
    limit = max(1.0, min(timeout, left() - 10))
    log('$ ' + ' '.join(cmd) + '   (limit %.0fs)' % limit)
    t = time.monotonic()
    with GpuSampler() as g, tempfile.TemporaryFile() as outf:
        p = subprocess.Popen(cmd, stdout=outf, stderr=subprocess.STDOUT, env=env)
        rc, ru = None, None
        while rc is None:
            pid, status, ru_ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                rc, ru = os.waitstatus_to_exitcode(status), ru_
                break
            if time.monotonic() - t > limit:
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                rc = 124
                break
            time.sleep(0.05)
        p.returncode = rc
        outf.seek(0)
        text = outf.read().decode('utf8', 'replace')
    LOG.write(text[-6000:] + '\n')
    return {'rc': rc, 'text': text, 'wall_s': time.monotonic() - t, 'rss_peak_mib': ru.ru_maxrss / 1024 if ru else None,
            'gpu_peak_mib': g.peak}


def num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def run_ours(key, model, name, size, steps, cfg):
    r = {'model': name, 'size': size, 'steps': steps, 'engine': 'sdnode', 'backend': key.split('-', 1)[1]}
    dev = 'cpu' if CPU else 'vulkan'
    x = timed([BIN[key], '--model', model, '--tokenizer', merges(), '--size', str(size), '--steps', str(steps),
               '--cfg', str(cfg), '--device', dev, '--threads', str(args.jobs)], timeout=240)
    r.update(wall_s=round(x['wall_s'], 2), rss_peak_mib=x['rss_peak_mib'], gpu_peak_mib=x['gpu_peak_mib'])
    line = next((l for l in x['text'].splitlines() if l.startswith('{')), None)
    if x['rc'] != 0 or not line:
        r['status'] = 'failed (rc %s): %s' % (x['rc'], ' '.join(x['text'].strip().splitlines()[-2:])[-300:])
        return r
    o = json.loads(line)
    r.update(step_s=o.get('step_best_s'), step_mean_s=o.get('step_mean_s'), decode_s=o.get('decode_s'),
             load_s=o.get('load_s'), own_device_peak_mib=o.get('peak_device_mb'), device=o.get('device'), status='ok')
    if r['step_s']:
        r['it_s'] = 1.0 / r['step_s']
    return r


def run_theirs(key, model, name, size, steps, cfg):
    r = {'model': name, 'size': size, 'steps': steps, 'engine': 'stable-diffusion.cpp', 'backend': key.split('-', 1)[1]}
    out = os.path.join(WORK, 'sdcpp-%s-%s.png' % (key, name))
    x = timed([BIN[key], '-m', model, '-p', PROMPT, '-W', str(size), '-H', str(size), '--steps', str(steps),
               '--cfg-scale', str(cfg), '--sampling-method', 'euler', '-s', '42', '-t', str(args.jobs), '-o', out, '-v'],
              timeout=240)
    r.update(wall_s=round(x['wall_s'], 2), rss_peak_mib=x['rss_peak_mib'], gpu_peak_mib=x['gpu_peak_mib'])
    sampling = num(r'sampling completed, taking ([\d.]+)s', x['text'])
    if x['rc'] != 0 or sampling is None:
        r['status'] = 'failed (rc %s): %s' % (x['rc'], ' '.join(x['text'].strip().splitlines()[-2:])[-300:])
        return r
    r.update(step_s=sampling / steps, it_s=steps / sampling if sampling else None,
             decode_s=num(r'decode_first_stage completed, taking ([\d.]+)s', x['text']),
             load_s=num(r'loading tensors completed, taking ([\d.]+)s', x['text']), status='ok')
    return r


def ratios():
    out = []
    ours = [r for r in report['runs'] if r['engine'] == 'sdnode' and r.get('status') == 'ok']
    theirs = [r for r in report['runs'] if r['engine'] != 'sdnode' and r.get('status') == 'ok']
    for o in ours:
        for t in theirs:
            if (o['model'], o['size'], o['steps']) != (t['model'], t['size'], t['steps']):
                continue
            q = {'model': '%s %d² %d steps' % (o['model'], o['size'], o['steps']), 'ours': 'sdnode ' + o['backend'],
                 'theirs': 'stable-diffusion.cpp ' + t['backend']}
            for k, a, b in [('step', 'step_s', 'step_s'), ('decode', 'decode_s', 'decode_s'),
                            ('gpu_mem', 'gpu_peak_mib', 'gpu_peak_mib'), ('rss', 'rss_peak_mib', 'rss_peak_mib')]:
                if o.get(a) and t.get(b):
                    q[k] = o[a] / t[b]
            out.append(q)
    report['ratios'] = out


def runs(name, size, steps, cfg, wait_for_model):
    deadline = time.monotonic() + wait_for_model
    while name not in MODELS and time.monotonic() < deadline and left() > 60:
        time.sleep(2)
    if name not in MODELS:
        note('no %s checkpoint in time: its runs skipped' % name)
        return
    model = MODELS[name]
    order = [k for k in ['sdnode-vulkan', 'sdnode-cpu', 'sdcpp-vulkan', 'sdcpp-cuda', 'sdcpp-cpu'] if k in BIN]
    for key in order:
        if left() < 45:
            note('out of time before %s %s' % (key, name))
            break
        r = (run_ours if key.startswith('sdnode') else run_theirs)(key, model, name, size, steps, cfg)
        log('%s %s: %s' % (key, name, json.dumps({k: v for k, v in r.items() if k != 'model'})))
        report['runs'].append(r)
        ratios()
        write_report()


def main():
    log('sdnode device benchmark: %s, budget %.0f s, work folder %s' % (report['mode'], args.budget, WORK))
    try:
        machine()
        vulkan_tools()
        models = start_models()
        builds()
        runs('sd15', SIZE, STEPS, 7, wait_for_model=240)
        if args.sdxl:
            runs('sdxl', 64 if CPU else 1024, args.sdxl_steps, 5, wait_for_model=max(0, left() - 120))
        models.join(timeout=0)
    except Exception as e:  # the report comes back whatever happened
        note('the run stopped: %r' % (e,))
    finally:
        write_report()
        log('report: %s' % os.path.join(args.out, 'report.md'))
        LOG.flush()
    sys.stdout.write(markdown())


if __name__ == '__main__':
    main()
