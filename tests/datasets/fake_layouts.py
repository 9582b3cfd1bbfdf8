"""Miniature copies of the paper's six data sets in their real on-disk layouts (real file
names and metadata files), for the tests: a few short tones per class and split, one corrupt
file, one file at another sample rate and (in some) a stereo file.

Each ``make_*`` writes below ``data_path`` and returns a :class:`Fake` describing what it
wrote: the expectations of the tests come from here, never from the loaders.
"""
import csv
import json
import os
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf

SR = 16000


@dataclass
class Fake:
    """What a miniature copy holds.

    labels: {path: class name} of every recording the loader must use (corrupt included);
    NSynth: {path: (pitch, family name)}.
    groups: {path: group} (speaker, author, instrument) of the same recordings.
    splits: {path: split} where the data set fixes the split itself (official splits).
    corrupt: the corrupt file; other_rate: (path, sample rate, tone frequency in Hz);
    stereo: a two-channel file or None; ignored: files on disk the loader must leave out;
    groups_listed: every group that takes part in a grouped split (VoxForge also counts the
    speakers of sessions without files).
    """
    data_path: str
    labels: Dict[str, str] = field(default_factory=dict)
    groups: Dict[str, str] = field(default_factory=dict)
    splits: Dict[str, str] = field(default_factory=dict)
    corrupt: str = ''
    other_rate: Tuple[str, int, float] = ('', 0, 0.)
    stereo: Optional[str] = None
    ignored: List[str] = field(default_factory=list)
    groups_listed: List[str] = field(default_factory=list)


def tone(freq: float, seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz at half scale: (L,) or (L, channels) float32; the second channel
    is at 1.5 times the frequency."""
    t = np.arange(int(round(seconds * rate))) / rate
    chans = [0.5 * np.sin(2 * np.pi * freq * (1 + 0.5 * c) * t) for c in range(channels)]
    x = np.stack(chans, axis=1) if channels > 1 else chans[0]
    return x.astype(np.float32)


def write(path: str, x: np.ndarray, rate: int = SR, **kwargs) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x, rate, **kwargs)
    return path


def write_corrupt(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(700))
    return path


def class_freq(index: int) -> float:
    return 250. + 110. * (index % 30)


def make_speechcommands(data_path: str) -> Fake:
    """SpeechCommands/speech_commands_v0.02: 4 of the 35 words, 3 speakers, 2 takes each;
    4 clips in each list, the rest is train; an 8 kHz clip, a corrupt clip, the background
    noise folder and a clip without ``_nohash_`` (both ignored)."""
    root = os.path.join(data_path, 'SpeechCommands', 'speech_commands_v0.02')
    words = {'bed': 1, 'dog': 4, 'yes': 33, 'zero': 34}  # the original's label indices
    speakers = ('0a2b400e', '1cb788bc', 'c1d39ce8')
    fake = Fake(data_path)
    rels = []
    for word, index in words.items():
        for speaker in speakers:
            for take in range(2):
                rel = '%s/%s_nohash_%d.wav' % (word, speaker, take)
                path = write(os.path.join(root, rel), tone(class_freq(index), 0.2 + 0.01 * take))
                fake.labels[path] = word
                fake.groups[path] = speaker
                rels.append(rel)
    lists = {'val': rels[1::6], 'test': rels[4::6]}
    for split, name in (('val', 'validation_list.txt'), ('test', 'testing_list.txt')):
        with open(os.path.join(root, name), 'w') as f:
            f.write(''.join(rel + '\n' for rel in lists[split]))
    for rel in rels:
        split = 'val' if rel in lists['val'] else 'test' if rel in lists['test'] else 'train'
        fake.splits[os.path.join(root, rel)] = split
    fake.corrupt = write_corrupt(os.path.join(root, 'dog', '1cb788bc_nohash_0.wav'))
    path = os.path.join(root, 'zero', 'c1d39ce8_nohash_1.wav')
    fake.other_rate = (write(path, tone(1000., 0.2, 8000), 8000), 8000, 1000.)
    fake.ignored = [write(os.path.join(root, '_background_noise_', 'white_noise.wav'),
                          tone(3000., 1.)),
                    write(os.path.join(root, 'yes', 'not_a_take.wav'), tone(500., 0.2))]
    with open(os.path.join(root, '_background_noise_', 'README.md'), 'w') as f:
        f.write('background noise\n')
    return fake


CREMAD_EMOTIONS = ('NEU', 'HAP', 'SAD', 'ANG', 'FEA', 'DIS')


def make_cremad(data_path: str) -> Fake:
    """CREMA-D/AudioWAV: 7 speakers (1004..1010) with 3 clips each, emotions cycling; a
    corrupt clip, a 44.1 kHz clip, a stereo clip, and 1010_IWL_SAD_XX (left out as in the
    original) plus a non-clip file."""
    root = os.path.join(data_path, 'CREMA-D', 'AudioWAV')
    fake = Fake(data_path)
    sentences = ('DFA', 'IEO', 'TIE')
    k = 0
    for speaker in range(1004, 1011):
        for sentence in sentences:
            emotion = CREMAD_EMOTIONS[k % 6]
            k += 1
            name = '%d_%s_%s_%s.wav' % (speaker, sentence, emotion, 'XX' if k % 2 else 'HI')
            path = write(os.path.join(root, name),
                         tone(class_freq(CREMAD_EMOTIONS.index(emotion)), 0.15 + 0.01 * k))
            fake.labels[path] = emotion
            fake.groups[path] = str(speaker)
    names = sorted(fake.labels)
    fake.corrupt = write_corrupt(names[3])
    fake.other_rate = (write(names[7], tone(1200., 0.2, 44100), 44100), 44100, 1200.)
    fake.stereo = write(names[10], tone(700., 0.2, channels=2))
    fake.ignored = [write(os.path.join(root, '1010_IWL_SAD_XX.wav'), tone(400., 0.2))]
    with open(os.path.join(root, 'desktop.ini'), 'w') as f:
        f.write('[x]\n')
    fake.groups_listed = sorted(set(fake.groups.values()))
    return fake


VOXFORGE_HOST = 'www.repository.voxforge1.org/downloads'


def voxforge_url(language: str, session: str) -> str:
    return '%s/%s/Trunk/Audio/Main/16kHz_16bit/%s.tgz' % (VOXFORGE_HOST, language.lower(),
                                                          session)


def make_voxforge(data_path: str) -> Fake:
    """voxforge/: voxforge_urls.txt with 10 sessions of 9 speakers ('anonymous' in two
    languages), 2 files each in ``<session>_<LANG>/``, one session listed but absent, a FLAC
    file, a 48 kHz file, a stereo file, a corrupt file."""
    root = os.path.join(data_path, 'voxforge')
    sessions = [('DE', 'anonymous-20080504-qvg'), ('EN', 'anonymous-20100101-abc'),
                ('DE', 'ralfherzog-20071220-de34'), ('EN', 'john-20090808-xyz'),
                ('ES', 'pedro-20110303-es1'), ('FR', 'jean-20120404-fr1'),
                ('IT', 'luca-20130505-it1'), ('RU', 'ivan-20140606-ru1'),
                ('FR', 'marie-20150707-fr2'), ('IT', 'ghost-20160808-gone')]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, 'voxforge_urls.txt'), 'w') as f:
        f.write(''.join(voxforge_url(lang, s) + '\n' for lang, s in sessions))
    fake = Fake(data_path)
    languages = ('DE', 'EN', 'ES', 'FR', 'IT', 'RU')
    for lang, session in sessions[:-1]:  # the last one was never downloaded
        for i in range(2):
            ext = 'flac' if (lang, i) == ('ES', 1) else 'wav'
            path = write(os.path.join(root, '%s_%s' % (session, lang), 'de5-%02d.%s' % (i, ext)),
                         tone(class_freq(languages.index(lang)), 0.2 + 0.02 * i))
            fake.labels[path] = lang
            fake.groups[path] = session.split('-')[0]
    fake.groups_listed = sorted({s.split('-')[0] for _, s in sessions})
    names = sorted(fake.labels)
    fake.corrupt = write_corrupt(names[2])
    fake.other_rate = (write(names[5], tone(900., 0.25, 48000), 48000), 48000, 900.)
    fake.stereo = write(names[8], tone(600., 0.2, channels=2))
    return fake


def make_voxforge_archive(data_path: str, language: str, session: str,
                          files: Dict[str, np.ndarray]) -> str:
    """A VoxForge-style archive ``<session>/wav/<name>`` plus ``<session>/etc/README`` where
    ``wget -x`` puts it below ``data_path/voxforge``; returns its path."""
    archive = os.path.join(data_path, 'voxforge', *voxforge_url(language, session).split('/'))
    staging = archive + '.d'
    for name, x in files.items():
        write(os.path.join(staging, session, 'wav', name), x)
    os.makedirs(os.path.join(staging, session, 'etc'))
    with open(os.path.join(staging, session, 'etc', 'README'), 'w') as f:
        f.write('User Name:%s\n' % session.split('-')[0])
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(os.path.join(staging, session), arcname=session)
    return archive


NSYNTH_FAMILIES = ('bass', 'brass', 'flute', 'guitar', 'keyboard', 'mallet', 'organ', 'reed',
                   'string', 'synth_lead', 'vocal')


def make_nsynth(data_path: str) -> Fake:
    """nsynth/nsynth-{train,valid,test}: examples.json and audio/<note_str>.wav, 8/4/4 notes
    of several families and pitches; a corrupt note, a 22.05 kHz note."""
    fake = Fake(data_path)
    plan = {'train': 8, 'val': 4, 'test': 4}
    dirs = {'train': 'nsynth-train', 'val': 'nsynth-valid', 'test': 'nsynth-test'}
    sources = ('acoustic', 'electronic', 'synthetic')
    n = 0
    for split, count in plan.items():
        directory = os.path.join(data_path, 'nsynth', dirs[split])
        examples = {}
        for i in range(count):
            family = (3 * n) % 11
            pitch = 24 + 5 * n
            instrument = 10 + n % 5
            source = n % 3
            inst_str = '%s_%s_%03d' % (NSYNTH_FAMILIES[family], sources[source], instrument)
            note = '%s-%03d-%03d' % (inst_str, pitch, 75)
            examples[note] = {
                'note': 1000 + n, 'note_str': note, 'instrument': instrument,
                'instrument_str': inst_str, 'pitch': pitch, 'velocity': 75,
                'sample_rate': 16000, 'instrument_source': source,
                'instrument_source_str': sources[source], 'instrument_family': family,
                'instrument_family_str': NSYNTH_FAMILIES[family],
                'qualities': [0] * 10, 'qualities_str': []}
            path = write(os.path.join(directory, 'audio', note + '.wav'),
                         tone(440. * 2 ** ((pitch - 69) / 12), 0.2))
            fake.labels[path] = (pitch, NSYNTH_FAMILIES[family])
            fake.groups[path] = inst_str
            fake.splits[path] = split
            n += 1
        with open(os.path.join(directory, 'examples.json'), 'w') as f:
            json.dump(examples, f, indent=2)
    names = sorted(fake.labels)
    fake.corrupt = write_corrupt(names[1])
    fake.other_rate = (write(names[6], tone(1500., 0.2, 22050), 22050), 22050, 1500.)
    return fake


BIRDCLEF_COLUMNS = ('primary_label', 'secondary_labels', 'type', 'latitude', 'longitude',
                    'scientific_name', 'common_name', 'author', 'date', 'filename', 'license',
                    'rating', 'time', 'url')
BIRDCLEF_LONG_SECONDS = 17.


def make_birdclef(data_path: str) -> Fake:
    """birdclef2021/: train_metadata.csv and train_short_audio/<label>/XC*.ogg at 32 kHz
    (OGG Vorbis, as Kaggle's); 7 authors with 2 recordings each, 3 labels; every author's
    first recording is 17 s long (the 16 s validation crop), the others 0.3 s; a corrupt
    file, a 22.05 kHz file, a stereo file."""
    root = os.path.join(data_path, 'birdclef2021')
    labels = ('amecro', 'norcar', 'acafly')
    authors = ('Ted Floyd', 'Paul Marvin', 'Andrew Spencer', 'Mike Nelson', 'Lance A. M. Benner',
               'Richard E. Webster', 'Bobby Wilcox')
    fake = Fake(data_path)
    rows = []
    k = 0
    for author in authors:
        for i in range(2):
            label = labels[k % 3]
            filename = 'XC%d.ogg' % (109605 + 37 * k)
            seconds = BIRDCLEF_LONG_SECONDS if i == 0 else 0.3
            path = write(os.path.join(root, 'train_short_audio', label, filename),
                         tone(class_freq(k % 3), seconds, 32000), 32000, format='OGG',
                         subtype='VORBIS')
            fake.labels[path] = label
            fake.groups[path] = author
            rows.append({'primary_label': label, 'secondary_labels': "['amerob']",
                         'type': "['call', 'song']", 'latitude': '35.3', 'longitude': '-79.1',
                         'scientific_name': 'Corvus brachyrhynchos',
                         'common_name': 'American Crow', 'author': author,
                         'date': '2012-01-%02d' % (k + 1), 'filename': filename,
                         'license': 'Creative Commons Attribution-NonCommercial-ShareAlike 3.0',
                         'rating': '4.0', 'time': '08:00',
                         'url': 'https://www.xeno-canto.org/%d' % (109605 + 37 * k)})
            k += 1
    with open(os.path.join(root, 'train_metadata.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, BIRDCLEF_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    short = sorted(p for p in fake.labels if sf.info(p).duration < 1)
    fake.corrupt = write_corrupt(short[0])
    fake.other_rate = (write(short[1], tone(2000., 0.3, 22050), 22050, format='OGG',
                             subtype='VORBIS'), 22050, 2000.)
    fake.stereo = write(short[2], tone(800., 0.3, 32000, channels=2), 32000, format='OGG',
                        subtype='VORBIS')
    fake.groups_listed = sorted(set(authors))
    return fake


#: data set name -> miniature copy writer
MAKERS = {'SPEECHCOMMANDS': make_speechcommands, 'CREMAD': make_cremad,
          'VOXFORGE': make_voxforge, 'NSYNTH_PITCH': make_nsynth, 'NSYNTH_INST': make_nsynth,
          'BIRDCLEF2021': make_birdclef}
