//! The protobuf codec of the generated services: tonic-prost's, except
//! that a message that does not decode is the client's fault and is
//! answered INVALID_ARGUMENT (tonic-prost answers INTERNAL, which reads as
//! a server bug and is retried by some clients).

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

pub struct PbCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for PbCodec<T, U> {
    fn default() -> Self {
        PbCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for PbCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = PbDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        PbDecoder(self.0.decoder())
    }
}

pub struct PbDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for PbDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(src).map_err(|s| match s.code() {
            Code::Internal => Status::invalid_argument(format!(
                "request body: not a valid protobuf message ({})",
                s.message()
            )),
            _ => s,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
