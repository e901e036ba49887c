"""Log-mel spectrograms with ``tf.signal`` (graph-friendly, used inside ``tf.data``)."""

from __future__ import annotations

import dataclasses

import gin
import tensorflow as tf

from avts_tf.settings import number_setting


@gin.configurable(module="data")
@dataclasses.dataclass(frozen=True)
class LogMelSpec:
    """How a waveform becomes the audio tower's ``(frames, mel_bins, 1)`` input.

    Attributes:
        sample_rate: Rate of the waveform in Hz.
        mel_bins: Number of mel bands.
        window_s: STFT window length in seconds.
        hop_s: STFT hop in seconds; one spectrogram frame per hop.
        lower_hz: Lowest mel band edge.
        upper_hz: Highest mel band edge (``None``: Nyquist).
        log_offset: Added before the log to avoid ``log(0)``.
    """

    sample_rate: int = 16000
    mel_bins: int = 40
    window_s: float = 0.025
    hop_s: float = 0.010
    lower_hz: float = 20.0
    upper_hz: float | None = None
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        number_setting("data.LogMelSpec.sample_rate", self.sample_rate, integer=True)
        number_setting("data.LogMelSpec.mel_bins", self.mel_bins, integer=True)
        for name in ("window_s", "hop_s", "log_offset"):
            number_setting(f"data.LogMelSpec.{name}", getattr(self, name))
        number_setting("data.LogMelSpec.lower_hz", self.lower_hz, zero_allowed=True)
        nyquist = self.sample_rate / 2
        if self.upper_hz is not None and not self.lower_hz < self.upper_hz <= nyquist:
            raise ValueError(
                f"data.LogMelSpec.upper_hz must be above lower_hz "
                f"({self.lower_hz}) and at most {nyquist:g} Hz (Nyquist), got "
                f"{self.upper_hz!r}"
            )
        for name, samples in (("window_s", self.window_samples), ("hop_s", self.hop_samples)):
            if samples < 1:
                raise ValueError(
                    f"data.LogMelSpec.{name} is {getattr(self, name)!r} s, under one "
                    f"sample at {self.sample_rate} Hz"
                )

    @property
    def window_samples(self) -> int:
        """STFT window length in samples."""
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        """STFT hop in samples."""
        return int(round(self.hop_s * self.sample_rate))

    @property
    def fft_length(self) -> int:
        """Smallest power of two that holds one window."""
        return 1 << (self.window_samples - 1).bit_length()

    def num_frames(self, num_samples: int) -> int:
        """Spectrogram frames produced for ``num_samples`` samples (``pad_end=False``)."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.hop_samples


def log_mel_spectrogram(waveform: tf.Tensor, spec: LogMelSpec) -> tf.Tensor:
    """Log-mel spectrogram of ``waveform``.

    Args:
        waveform: ``[..., num_samples]`` float waveform in ``[-1, 1]``.
        spec: Feature settings.

    Returns:
        ``[..., frames, mel_bins, 1]`` float32, ``frames = spec.num_frames(num_samples)``.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    stft = tf.signal.stft(
        waveform,
        frame_length=spec.window_samples,
        frame_step=spec.hop_samples,
        fft_length=spec.fft_length,
        window_fn=tf.signal.hann_window,
    )
    power = tf.math.square(tf.abs(stft))
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=spec.mel_bins,
        num_spectrogram_bins=spec.fft_length // 2 + 1,
        sample_rate=spec.sample_rate,
        lower_edge_hertz=spec.lower_hz,
        upper_edge_hertz=spec.upper_hz or spec.sample_rate / 2.0,
    )
    mel = tf.tensordot(power, mel_matrix, axes=1)
    return tf.math.log(mel + spec.log_offset)[..., tf.newaxis]
