"""Turning task messages and results into bytes and back.

``Serializer`` pickles, optionally zlib-compressed. ``SignedSerializer`` adds an
HMAC so a consumer never unpickles bytes that a holder of the secret did not
write: pickle runs code on load, so a forged message must be refused before it.
"""
import hashlib
import hmac
import pickle
import zlib

from hueyd.exceptions import ConfigurationError, SignatureError

# Every zlib stream starts with 0x78 and every pickle of protocol 2+ with 0x80,
# so one byte tells compressed data apart whatever this side's settings are.
_ZLIB_HEADER = 0x78


class Serializer:
    def __init__(self, compression=False, compression_level=6, use_zlib=False,
                 pickle_protocol=pickle.HIGHEST_PROTOCOL):
        # huey offered gzip or zlib; both mean "compress" here and zlib is used.
        self.compression = bool(compression or use_zlib)
        self.compression_level = compression_level
        self.pickle_protocol = pickle_protocol

    def _encode(self, obj):
        data = pickle.dumps(obj, self.pickle_protocol)
        if self.compression:
            data = zlib.compress(data, self.compression_level)
        return data

    def _decode(self, data):
        if data[:1] and data[0] == _ZLIB_HEADER:
            data = zlib.decompress(data)
        return pickle.loads(data)

    def serialize(self, obj):
        return self._encode(obj)

    def deserialize(self, data):
        return self._decode(data)


class SignedSerializer(Serializer):
    """Pickle with an HMAC-SHA256 signature in front; unsigned or forged data is refused."""

    digest_size = hashlib.sha256().digest_size

    def __init__(self, secret=None, salt='huey', **kwargs):
        if not secret:
            raise ConfigurationError(
                'SignedSerializer needs a secret: pass secret="..." (the same '
                'value in the application and in the daemon).')
        super().__init__(**kwargs)
        secret = secret.encode() if isinstance(secret, str) else secret
        salt = salt.encode() if isinstance(salt, str) else salt
        # Derive the key so the raw secret is never used directly as an HMAC key.
        self._key = hashlib.sha256(salt + b'hueyd-signer' + secret).digest()

    def _sign(self, data):
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def serialize(self, obj):
        data = self._encode(obj)
        return self._sign(data) + data

    def deserialize(self, data):
        if not isinstance(data, (bytes, bytearray)) or len(data) <= self.digest_size:
            raise SignatureError(
                'refusing to deserialize a message without a signature (%d bytes, '
                'unsigned or truncated): it was not written by a SignedSerializer. '
                'Check that the producer uses the same serializer and secret.'
                % len(data or b''))
        signature, payload = data[:self.digest_size], data[self.digest_size:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise SignatureError(
                'refusing to deserialize a message with a bad signature: it was '
                'forged, corrupted, or signed with another secret or salt. Check '
                'that the application and the daemon share the same secret.')
        return self._decode(payload)
