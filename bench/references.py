"""The code each app's users would otherwise copy, written as its source writes it, for
`bench.compare`. Every function trains on the same data as the app (`splits`, the app's own
`load_data`) and takes a `clock` (`bench.compare.QualityClock`) that scores the model on the
app's test split after every epoch (`test`: its inputs and targets as arrays, which each
reference turns into its own model's input the way its tutorial does).
"""

import re
import string
import tempfile

import keras
import numpy as np
import tensorflow as tf


def arrays(dataset: tf.data.Dataset) -> tuple:
    """An unbatched (input, target) dataset as NumPy arrays (inputs: an array, or a dict of
    arrays by name)."""
    inputs, targets = zip(*dataset.batch(4096).as_numpy_iterator())
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *inputs), np.concatenate(
        targets)


def carve(inputs, targets, fraction: float, seed: int) -> tuple[tuple, tuple]:
    """A seeded random `fraction` of the examples for validation, as `validation_split` with a
    seed does in the tutorials."""
    order = np.random.default_rng(seed).permutation(len(inputs))
    cut = int(len(inputs) * (1 - fraction))
    return ((inputs[order[:cut]], targets[order[:cut]]),
            (inputs[order[cut:]], targets[order[cut:]]))


def _strip_html(text):
    lowercase = tf.strings.lower(text)
    stripped = tf.strings.regex_replace(lowercase, "<br />", " ")
    return tf.strings.regex_replace(stripped, f"[{re.escape(string.punctuation)}]", "")


def sentiment_conv1d(splits, test, clock, seed: int) -> None:
    """keras.io/examples/nlp/text_classification_from_scratch: TextVectorization (20,000 tokens,
    500 per review, HTML and punctuation stripped) in the tf.data pipeline, Embedding 128, two
    Conv1D(128, 7, strides 3), global max pooling, Dense 128, sigmoid; 20% of the training
    reviews for validation, batch 32, 3 epochs."""
    texts, labels = arrays(splits.train)
    (train_texts, train_labels), (validation_texts, validation_labels) = carve(
        texts, labels, 0.2, seed)
    vectorize = keras.layers.TextVectorization(standardize=_strip_html, max_tokens=20000,
                                               output_mode="int", output_sequence_length=500)
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(train_texts).batch(32))

    def dataset(texts, labels):
        return (tf.data.Dataset.from_tensor_slices((texts, labels)).batch(32)
                .map(lambda text, label: (vectorize(tf.expand_dims(text, -1)), label))
                .cache().prefetch(10))

    inputs = keras.Input(shape=(None,), dtype="int64")
    x = keras.layers.Embedding(20000, 128)(inputs)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    predictions = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, predictions)
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    clock.score_inputs(vectorize(test[0][:, np.newaxis]), test[1])
    model.fit(dataset(train_texts, train_labels),
              validation_data=dataset(validation_texts, validation_labels), epochs=3, verbose=0,
              callbacks=[clock])


def sentiment_keras_hub(splits, test, clock, seed: int, checkpoint: str) -> None:
    """KerasHub's own task for fine-tuning a BERT-family checkpoint (the "Getting started with
    KerasHub" recipe): `BertTextClassifier` over the same MiniLM checkpoint, its preprocessor
    (sequence length 128), KerasHub's default compile (Adam 5e-5, logits), the whole backbone
    trained, batch 16, 3 epochs, 20% of the training reviews for validation."""
    import keras_hub

    texts, labels = arrays(splits.train)
    (train_texts, train_labels), validation = carve(texts, labels, 0.2, seed)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        checkpoint, sequence_length=128)
    classifier = keras_hub.models.BertTextClassifier(
        backbone=keras_hub.models.BertBackbone.from_preset(checkpoint), num_classes=2,
        preprocessor=preprocessor)
    clock.score_inputs(*test)
    classifier.fit(x=train_texts, y=train_labels, batch_size=16, epochs=3,
                   validation_data=validation, verbose=0, callbacks=[clock])


def speech_simple_audio(splits, test, clock) -> None:
    """tensorflow.org/tutorials/audio/simple_audio: |STFT| (frame 255, step 128) in tf.data,
    batch 64, cache, shuffle, prefetch; Resizing 32x32, Normalization adapted on the training
    spectrograms, Conv2D 32 and 64, max pooling, dropout, Dense 128, logits; Adam, 10 epochs,
    EarlyStopping(patience=2)."""

    def spectrogram(waveform):
        return tf.abs(tf.signal.stft(waveform, frame_length=255, frame_step=128))[..., tf.newaxis]

    def dataset(split):
        return split.batch(64).map(lambda audio, label: (spectrogram(audio), label),
                                   num_parallel_calls=tf.data.AUTOTUNE)

    train = dataset(splits.train).cache().shuffle(10000).prefetch(tf.data.AUTOTUNE)
    validation = dataset(splits.validation).cache().prefetch(tf.data.AUTOTUNE)
    input_shape = train.element_spec[0].shape[1:]
    normalization = keras.layers.Normalization()
    normalization.adapt(train.map(lambda spectrum, label: spectrum))
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Resizing(32, 32),
        normalization,
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(len(splits.class_names)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    clock.score_inputs(spectrogram(test[0]), test[1])
    model.fit(train, validation_data=validation, epochs=10, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=2), clock])


def forecast_weather_lstm(splits, test, clock, window: int, horizon: int) -> None:
    """keras.io/examples/timeseries/timeseries_weather_forecasting: the series normalised by
    the training part's mean and spread, windows from `timeseries_dataset_from_array` (batch 256),
    LSTM 32, Dense; Adam 1e-3, MSE, 10 epochs, EarlyStopping(patience=5) and a best-weights
    ModelCheckpoint. Same window and horizon as the app; MAE in the series' own units."""
    series = splits.context["series"]
    train_end, validation_end = splits.facts["split_steps"]
    mean, spread = series[:train_end].mean(), series[:train_end].std()
    normalised = (series - mean) / spread

    def dataset(first_target: int, end: int):
        starts = np.arange(max(first_target - window, 0), end - horizon - window + 1)
        targets = np.stack([normalised[start + window:start + window + horizon]
                            for start in starts])
        return keras.utils.timeseries_dataset_from_array(
            normalised[starts[0]:starts[-1] + window, np.newaxis], targets,
            sequence_length=window, batch_size=256)

    inputs = keras.Input(shape=(window, 1))
    lstm_out = keras.layers.LSTM(32)(inputs)
    outputs = keras.layers.Dense(horizon)(lstm_out)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse")
    clock.score_inputs((test[0] - mean) / spread, test[1],
                       to_units=lambda predicted: predicted * spread + mean)
    with tempfile.TemporaryDirectory() as folder:
        model.fit(dataset(window, train_end), validation_data=dataset(train_end, validation_end),
                  epochs=10, verbose=0, callbacks=[
                      keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5),
                      keras.callbacks.ModelCheckpoint(f"{folder}/model_checkpoint.weights.h5",
                                                      monitor="val_loss", save_weights_only=True,
                                                      save_best_only=True),
                      clock])


def vision_transfer_tutorial(folder: str, test, clock, seed: int, image_size: int,
                             weights: str) -> None:
    """tensorflow.org/tutorials/images/transfer_learning: `image_dataset_from_directory` (batch
    32, 20% validation), prefetch, RandomFlip + RandomRotation(0.2) in the model, MobileNetV2's
    `preprocess_input`, the base frozen (called with training=False), global average pooling,
    dropout 0.2, Dense logits; Adam 1e-4 for 10 epochs, then layers from 100 on unfrozen with
    RMSprop 1e-5 for 10 more. One output per class instead of the tutorial's single logit."""
    options = {"batch_size": 32, "image_size": (image_size, image_size), "seed": seed,
               "validation_split": 0.2}
    train = keras.utils.image_dataset_from_directory(f"{folder}/train", subset="training",
                                                     shuffle=True, **options)
    validation = keras.utils.image_dataset_from_directory(f"{folder}/train", subset="validation",
                                                          **options)
    class_count = len(train.class_names)
    train, validation = train.prefetch(tf.data.AUTOTUNE), validation.prefetch(tf.data.AUTOTUNE)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                     keras.layers.RandomRotation(0.2)])
    base_model = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3),
                                                include_top=False, weights=weights)
    base_model.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(class_count)(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4), loss=loss,
                  metrics=["accuracy"])
    clock.score_inputs(*test)
    model.fit(train, epochs=10, validation_data=validation, verbose=0, callbacks=[clock])
    base_model.trainable = True
    for layer in base_model.layers[:100]:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), loss=loss,
                  metrics=["accuracy"])
    model.fit(train, epochs=20, initial_epoch=10, validation_data=validation, verbose=0,
              callbacks=[clock])


def _xception_style_unet(image_size: tuple, num_classes: int) -> keras.Model:
    """keras.io's U-Net-like model: a stride-2 entry convolution, three blocks of two separable
    convolutions and a 3x3 max-pool with a strided 1x1 projection of the block's input added,
    four up blocks of two transposed convolutions and an upsampling with an upsampled 1x1
    projection added, and a 3x3 softmax convolution."""
    inputs = keras.Input(shape=image_size + (3,))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    previous = x
    for filters in (64, 128, 256):
        for _ in range(2):
            x = keras.layers.Activation("relu")(x)
            x = keras.layers.BatchNormalization()(
                keras.layers.SeparableConv2D(filters, 3, padding="same")(x))
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = keras.layers.add([x, keras.layers.Conv2D(filters, 1, strides=2,
                                                     padding="same")(previous)])
        previous = x
    for filters in (256, 128, 64, 32):
        for _ in range(2):
            x = keras.layers.Activation("relu")(x)
            x = keras.layers.BatchNormalization()(
                keras.layers.Conv2DTranspose(filters, 3, padding="same")(x))
        x = keras.layers.UpSampling2D(2)(x)
        residual = keras.layers.Conv2D(filters, 1, padding="same")(
            keras.layers.UpSampling2D(2)(previous))
        x = keras.layers.add([x, residual])
        previous = x
    outputs = keras.layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


def segmentation_keras_io_unet(splits, test, clock, seed: int) -> None:
    """keras.io/examples/vision/oxford_pets_image_segmentation: the U-Net-like Xception-style
    model on raw pixels, rmsprop, sparse categorical cross-entropy, batch 32, 15 epochs, a
    held-out validation set (1,000 of its 7,390 pictures: the same share here) and the best
    checkpoint kept (`ModelCheckpoint(save_best_only=True)`)."""
    (x_train, y_train), (x_test, y_test) = arrays(splits.train), test
    train, validation = carve(x_train.astype("float32"), y_train, 1000 / 7390, seed)
    model = _xception_style_unet(x_train.shape[1:3], len(splits.class_names))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    clock.score_inputs(x_test.astype("float32"), y_test)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = keras.callbacks.ModelCheckpoint(f"{folder}/oxford_segmentation.keras",
                                                     save_best_only=True)
        model.fit(*train, batch_size=32, epochs=15, validation_data=validation, verbose=0,
                  callbacks=[checkpoint, clock])


def detection_keras_hub_retinanet(splits, test, clock, seed: int) -> None:
    """keras.io/keras_hub/guides/object_detection_retinanet, its "custom training" part: a
    `RetinaNetBackbone` (levels 3-5, `use_p5=True`) on an image encoder trained from scratch,
    `RetinaNetObjectDetector` with the prediction heads' group norm, pixels scaled by 1/255,
    Adam 1e-3, the box loss MAE summed, batch 4, 5 epochs, the best checkpoint by validation loss
    kept and BackupAndRestore (the guide's TensorBoard logs left out). Adapted to the scenes: the
    encoder is a ResNet-18 (`resnet_18_imagenet`'s layout, no weights offline), the boxes go in
    as the guide's pixel `yxyx`, the anchors start at 8 pixels instead of 32 (`anchor_size` 1:
    with the default 4 no anchor overlaps the 64-pixel scenes' small digits enough to learn
    from, and mAP@0.5 stays under 0.005 after 6 epochs), and the validation set is the app's
    share (`--validation-fraction`) of the training scenes. Scored as COCO scores, detections
    down to a confidence of 0.05 (the decoder's default 0.5 cuts the curve)."""
    import keras_hub

    x_train, rows = arrays(splits.train)
    size = x_train.shape[1]
    train, validation = carve(x_train.astype("float32"), rows, 0.1, seed)

    def guide_boxes(rows):  # the app's (class, relative x_min, y_min, x_max, y_max) rows
        labels = rows[..., 0].astype("int32")
        boxes = rows[..., [2, 1, 4, 3]].astype("float32") * size
        boxes[labels < 0] = -1.0
        return {"boxes": boxes, "labels": labels}

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", use_pre_activation=False,
        image_shape=(None, None, 3))
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3,
                                                  max_level=5, use_p5=True)
    preprocessor = keras_hub.models.RetinaNetObjectDetectorPreprocessor(
        image_converter=keras_hub.layers.RetinaNetImageConverter(scale=1 / 255))
    anchors = keras_hub.layers.AnchorGenerator(bounding_box_format="yxyx", min_level=3,
                                               max_level=5, num_scales=3,
                                               aspect_ratios=[0.5, 1.0, 2.0], anchor_size=1.0)
    model = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=len(splits.class_names), bounding_box_format="yxyx",
        preprocessor=preprocessor, use_prediction_head_norm=True, anchor_generator=anchors)
    model.prediction_decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="yxyx", from_logits=True, confidence_threshold=0.05)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  box_loss=keras.losses.MeanAbsoluteError(reduction="sum"))
    clock.score_inputs(test[0].astype("float32"), test[1])
    with tempfile.TemporaryDirectory() as folder:
        callbacks = [keras.callbacks.BackupAndRestore(f"{folder}/weights",
                                                      delete_checkpoint=False),
                     keras.callbacks.ModelCheckpoint(
                         folder + "/weights/{epoch:04d}-{val_loss:.2f}.weights.h5",
                         save_best_only=True, save_weights_only=True),
                     clock]
        model.fit(train[0], guide_boxes(train[1]), batch_size=4, epochs=5,
                  validation_data=(validation[0], guide_boxes(validation[1])), verbose=0,
                  callbacks=callbacks)

